"""Feature inversion: an input whose features at a layer match those of a given image.

Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting Them"
(CVPR 2015, https://arxiv.org/abs/1412.0035): minimize

    ||phi(x) - phi(x0)||^2 / ||phi(x0)||^2 + lambda_alpha * N_alpha(x) + lambda_tv * TV_beta(x)

over pixels x in [0, 1], with an alpha-norm that keeps pixels in range (alpha = 6 in the
paper) and a total-variation prior that prefers piecewise-smooth images (beta = 2). The
pixel tensor belongs to the request and is the only thing gradients are taken for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.checks import Bound, check_cap
from service.engine.insight.forward import pixel_layer
from service.engine.insight.options import LR, TV, activation_layer
from service.engine.insight.transforms import total_variation
from service.engine.progress import Progress, no_progress

# The fixed ranges of the priors' weights and exponents (the route model reads them).
BETA = Bound(1.0, 8.0)
NORM = Bound(0.0, 1e6)
ALPHA = Bound(1.0, 16.0)


@dataclass(frozen=True)
class InvertPlan:
    """A validated request: layer, budget and regularizer weights.

    Attributes:
        layer, calls: the layer whose features are matched, and its calls per forward pass.
        steps, lr, seed: Adam steps, step size (pixel units) and the seed of the noise start.
        tv, beta: weight and exponent of the total-variation prior.
        norm, alpha: weight and exponent of the alpha-norm of the centred pixels (2x - 1).
    """

    layer: str
    calls: int
    steps: int
    lr: float
    seed: int
    tv: float
    beta: float
    norm: float
    alpha: float


@dataclass(frozen=True)
class InvertResult:
    """The reconstruction and its curves.

    Attributes:
        image: float32 [C, H, W] in [0, 1] at the model's input size.
        original: float32 [C, H, W] in [0, 1], the preprocessed upload, for comparison.
        loss: float32 [steps], the full objective at each step.
        distance: float32 [steps + 1], relative feature distance ||phi(x) - phi(x0)|| /
            ||phi(x0)||, from the starting point (index 0) to the final image.
    """

    image: np.ndarray
    original: np.ndarray
    loss: np.ndarray
    distance: np.ndarray

    @property
    def distance_drop(self) -> float:
        """Fraction by which the feature distance fell from the start."""
        start = float(self.distance[0])
        return 1.0 - float(self.distance[-1]) / start if start > 0 else 0.0


def plan_invert(
    model: LoadedModel,
    *,
    layer: str,
    steps: int = 200,
    lr: float = 0.1,
    seed: int = 0,
    tv: float = 0.5,
    beta: float = 2.0,
    norm: float = 0.01,
    alpha: float = 6.0,
    max_steps: int = 4096,
) -> InvertPlan:
    """Check every option against the catalog and the caps."""
    info = activation_layer(model, layer)
    check_cap("steps", steps, max_steps, setting="max_insight_steps")
    return InvertPlan(
        layer=info.name,
        calls=info.calls,
        steps=steps,
        lr=LR.check("lr", lr),
        seed=seed,
        tv=TV.check("tv", tv),
        beta=BETA.check("beta", beta),
        norm=NORM.check("norm", norm),
        alpha=ALPHA.check("alpha", alpha),
    )


def _features(model: LoadedModel, pixels: torch.Tensor, plan: InvertPlan) -> torch.Tensor:
    return pixel_layer(model, pixels, plan.layer, calls=plan.calls)


def invert(
    model: LoadedModel, batch: torch.Tensor, plan: InvertPlan, *, progress: Progress = no_progress
) -> InvertResult:
    """Reconstruct the first image of a normalized `batch` [1, C, H, W] from its features.

    `progress(step, total)` runs after every step and may raise `Cancelled`.
    """
    spec = model.spec
    mean = torch.tensor(spec.mean, device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=batch.device).view(1, -1, 1, 1)
    original = (batch[:1].float() * std + mean).clamp(0, 1)
    with torch.inference_mode():
        target = _features(model, original, plan)
    target = target.clone()  # a normal tensor, usable inside autograd
    target_norm = float(target.norm())
    if target_norm == 0.0:
        raise InvalidInput(
            f"layer: the features of this image at '{plan.layer}' are all zero; "
            "there is nothing to invert",
            field="layer",
        )
    generator = torch.Generator().manual_seed(plan.seed)
    start = torch.rand(original.shape, generator=generator).to(batch.device)
    pixels = start.requires_grad_(True)
    optimizer = torch.optim.Adam([pixels], lr=plan.lr)
    loss_curve = np.zeros(plan.steps, dtype=np.float32)
    distance = np.zeros(plan.steps + 1, dtype=np.float32)
    with torch.enable_grad():
        for step in range(plan.steps):
            # Cosine decay: large steps find the basin, small ones settle into it.
            for group in optimizer.param_groups:
                group["lr"] = plan.lr * 0.5 * (1.0 + math.cos(math.pi * step / plan.steps))
            features = _features(model, pixels, plan)
            gap = (features - target).pow(2).sum()
            loss = gap / (target_norm * target_norm)
            if plan.norm:
                loss = loss + plan.norm * (2.0 * pixels - 1.0).abs().pow(plan.alpha).mean()
            if plan.tv:
                loss = loss + plan.tv * total_variation(pixels, beta=plan.beta)
            (gradient,) = torch.autograd.grad(loss, [pixels])
            pixels.grad = gradient
            optimizer.step()
            with torch.no_grad():
                pixels.clamp_(0.0, 1.0)  # projected: the image stays an image
            loss_curve[step] = float(loss.detach())
            distance[step] = math.sqrt(float(gap.detach())) / target_norm
            progress(step + 1, plan.steps)
    with torch.inference_mode():
        final = pixels.detach()
        distance[plan.steps] = float((_features(model, final, plan) - target).norm()) / target_norm
    return InvertResult(
        image=final[0].cpu().numpy().astype(np.float32),
        original=original[0].cpu().numpy().astype(np.float32),
        loss=loss_curve,
        distance=distance,
    )
