"""Deletion and insertion (Petsiuk et al. 2018, RISE, https://arxiv.org/abs/1806.07421).

Pixels are taken most salient first, in `steps` equal portions. Deletion replaces them
with the all-zero normalized input (the dataset-mean colour, as RISE's evaluation code
does with `torch.zeros_like` on normalized tensors) and tracks the target's softmax
probability (a faithful map makes it fall fast: low AUC is good); insertion starts from
a strongly blurred image (`baselines.blur_sigma`) and puts the original pixels back (a
faithful map makes it rise fast: high AUC is good). AUC is the trapezoidal area under the
curve over the fraction of pixels, in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from service.engine.attribution.baselines import blur_sigma, gaussian_blur

DELETION = "deletion"
INSERTION = "insertion"
METRICS = (DELETION, INSERTION)
DEFAULT_STEPS = 32


@dataclass(frozen=True)
class Curves:
    """AUCs [B, T] per metric, and the curves [B, T, steps + 1] they come from."""

    auc: dict[str, torch.Tensor]
    curves: dict[str, torch.Tensor]


def deletion_insertion(
    module: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    *,
    metrics: tuple[str, ...] = METRICS,
    steps: int = DEFAULT_STEPS,
    rows: int = 32,
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> Curves:
    """AUCs for saliency `maps` [B, T, H, W] (input resolution) of `targets` [B, T].

    Ties in a map (ReLU zeros) are ordered by position, so the result is deterministic.

    Args:
        score: what the curve tracks when T = 1, (inputs [N, C, H, W], images [N]) -> [N]
            for inputs that are variants of `batch[images]` (an evaluation's region or box
            score, `EvalBatch.score`); None: the softmax probability of `targets` in
            `module`'s logits.
    """
    count, per_image, height, width = maps.shape
    positions = height * width
    order = (
        maps.reshape(count, per_image, positions)
        .float()
        .argsort(dim=2, descending=True, stable=True)
    )
    rank = torch.empty_like(order)
    rank.scatter_(2, order, torch.arange(positions, device=maps.device).expand_as(order))
    shown = torch.round(
        torch.linspace(0, positions, steps + 1, device=maps.device)
    ).long()  # pixels taken
    starts = {
        DELETION: torch.zeros_like(batch),
        INSERTION: gaussian_blur(batch, blur_sigma(height, width)),
    }
    auc: dict[str, torch.Tensor] = {}
    curves: dict[str, torch.Tensor] = {}
    total = count * per_image * (steps + 1)
    with torch.inference_mode():
        for metric in metrics:
            probs = torch.empty(total, device=batch.device)
            for start in range(0, total, rows):
                index = torch.arange(start, min(total, start + rows), device=batch.device)
                pair, step = index // (steps + 1), index % (steps + 1)
                image, target = pair // per_image, pair % per_image
                taken = (rank[image, target] < shown[step][:, None]).view(-1, 1, height, width)
                if metric == DELETION:
                    inputs = torch.where(taken, starts[DELETION][image], batch[image])
                else:
                    inputs = torch.where(taken, batch[image], starts[INSERTION][image])
                if score is not None:
                    probs[index] = score(inputs, image).to(probs.dtype)
                    continue
                logits = module(inputs).float()
                probs[index] = logits.softmax(dim=1).gather(1, targets[image, target][:, None])[
                    :, 0
                ]
            curve = probs.view(count, per_image, steps + 1)
            curves[metric] = curve
            auc[metric] = torch.trapezoid(curve, dx=1.0 / steps, dim=2)
    return Curves(auc, curves)
