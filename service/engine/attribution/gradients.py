"""Gradient maps w.r.t. the normalized input: vanilla, guided backprop, deconvnet,
input x gradient, integrated gradients and SmoothGrad.

Rows (image, target[, step or sample]) are batched `rows` at a time: one forward and one
backward pass serve a whole chunk. Gradients come from `torch.autograd.grad` on a copy of
the input that requires grad; parameters are frozen, so the model gets no `.grad`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from service.engine.attribution.graph import gradients_of
from service.engine.attribution.guided import relu_override
from service.engine.attribution.rcnn_heads import rows_with_grad
from service.engine.attribution.target_objects import (
    Target,
    as_target,
    batch_rows,
    concat_targets,
)
from service.engine.dense.outputs import detached


def input_gradients(
    module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, relu_mode: str | None = None
) -> torch.Tensor:
    """d(logit[targets[r]])/d(inputs[r]) for every row r of `inputs` [R, C, H, W]."""
    return row_gradients(
        module, inputs, lambda logits: logits.gather(1, targets[:, None])[:, 0], relu_mode=relu_mode
    )


def row_gradients(
    module: nn.Module,
    inputs: torch.Tensor,
    score: Callable[[Any], torch.Tensor],
    *,
    relu_mode: str | None = None,
) -> torch.Tensor:
    """d(score(output)[r])/d(inputs[r]) for every row r of `inputs` [R, C, H, W]."""
    x = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad(), relu_override(relu_mode), rows_with_grad(module, ()):
        scores = score(module(x))
        if not scores.requires_grad:  # a box no detection matches: a constant 0
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad


def target_rows(target: Target, images: torch.Tensor, which: torch.Tensor):
    """score(output) of target `which[r]` of image `images[r]` for every row r."""

    def score(output: Any) -> torch.Tensor:
        return target.scores(output, images).gather(1, which[:, None])[:, 0]

    return score


def concat_outputs(outputs: list[Any]) -> Any:
    """Chunks' outputs as one: logits concatenated, lists of detections joined."""
    if all(isinstance(o, torch.Tensor) for o in outputs):
        return torch.cat(outputs)
    if all(isinstance(o, list) for o in outputs):
        return [item for o in outputs for item in o]
    if all(isinstance(o, dict) for o in outputs):
        return {k: concat_outputs([o[k] for o in outputs]) for k in outputs[0]}
    return outputs[0] if len(outputs) == 1 else None


def _pairs(count: int, per_image: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(count, device=device).repeat_interleave(per_image)
    inner = torch.arange(per_image, device=device).repeat(count)
    return images, inner


def gradients_with_logits(
    module: nn.Module,
    batch: torch.Tensor,
    choose: Callable[[Any, slice], Target | torch.Tensor],
    *,
    rows: int,
    relu_mode: str | None = None,
) -> tuple[Any, Target, torch.Tensor]:
    """Gradients of several targets from one forward and one (batched) backward pass.

    Args:
        batch: [B, C, H, W].
        choose: (output of a chunk, the chunk's slice of the batch) -> its Target (or
            classes [b, T]); the default top-1 is taken from the same forward pass.
        rows: images per pass.
        relu_mode: 'guided', 'deconv' or None.

    Returns:
        the output (logits [B, classes] for a classifier), the Target and gradients
        [B, T, C, H, W].
    """
    outputs, targets, grads = [], [], []
    for start in range(0, batch.shape[0], rows):
        part = slice(start, start + rows)
        x = batch[part].detach().clone().requires_grad_(True)
        with torch.enable_grad(), relu_override(relu_mode), rows_with_grad(module, ()):
            out = module(x)
            chosen = as_target(choose(detached(out), part))
            (grad,) = gradients_of(chosen.scores(out, batch_rows(chosen)), [x])
        outputs.append(detached(out))
        targets.append(chosen)
        grads.append(grad)
    return concat_outputs(outputs), concat_targets(targets), torch.cat(grads)


def gauss_legendre(steps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes in (0, 1) and weights of the `steps`-point Gauss-Legendre rule (Captum's default)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor(0.5 * (1 + nodes), dtype=torch.float32, device=device)
    return alphas, torch.tensor(0.5 * weights, dtype=torch.float32, device=device)


def integrated_gradients(
    module: nn.Module,
    batch: torch.Tensor,
    targets: Target | torch.Tensor,
    baseline: torch.Tensor,
    *,
    steps: int,
    rows: int,
) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365).

    Returns [B, T, C, H, W]:

    (x - x') * integral over a in [0, 1] of the gradient at x' + a (x - x'), by a
    `steps`-point Gauss-Legendre rule; all steps of all targets and images are batched.
    """
    target = as_target(targets)
    count, per_image = target.classes.shape
    alphas, weights = gauss_legendre(steps, batch.device)
    pairs, step = _pairs(count * per_image, steps, batch.device)
    images, which = pairs // per_image, pairs % per_image
    delta = batch - baseline
    total = torch.zeros(
        (count * per_image, *batch.shape[1:]), dtype=batch.dtype, device=batch.device
    )
    for start in range(0, pairs.numel(), rows):
        img, tgt, k = (
            images[start : start + rows],
            which[start : start + rows],
            step[start : start + rows],
        )
        points = baseline[img] + alphas[k].view(-1, 1, 1, 1) * delta[img]
        grads = row_gradients(module, points, target_rows(target, img, tgt))
        total.index_add_(0, pairs[start : start + rows], grads * weights[k].view(-1, 1, 1, 1))
    return delta[:, None] * total.view(count, per_image, *batch.shape[1:])


NOISE_DRAW_BYTES = 256 * 2**20


def smoothgrad(
    module: nn.Module,
    batch: torch.Tensor,
    targets: Target | torch.Tensor,
    *,
    samples: int,
    noise: float,
    seed: int,
    rows: int,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017, https://arxiv.org/abs/1706.03825) -> [B, T, C, H, W].

    The mean gradient over `samples` copies of each image with Gaussian noise of standard
    deviation `noise` * (max - min of that normalized image), the paper's noise level. The
    noise comes from a CPU generator seeded with `seed`, image after image, the samples of
    an image in one draw as Captum's NoiseTunnel draws them (in several draws only when
    they would take more than NOISE_DRAW_BYTES), and every target of an image sees the
    same noisy copies.
    """
    target = as_target(targets)
    count, per_image = target.classes.shape
    generator = torch.Generator().manual_seed(seed)
    out = torch.zeros((count, per_image, *batch.shape[1:]), dtype=batch.dtype, device=batch.device)
    per_sample = batch[0].numel() * batch.element_size()
    draw_size = max(1, min(samples, NOISE_DRAW_BYTES // per_sample))
    for image in range(count):
        sigma = noise * (batch[image].max() - batch[image].min()).cpu()
        for first in range(0, samples, draw_size):
            size = min(draw_size, samples - first)
            draws = torch.randn((size, *batch.shape[1:]), generator=generator) * sigma
            draws = draws.to(batch.device)
            which, sample = _pairs(per_image, size, batch.device)
            for start in range(0, which.numel(), rows):
                tgt, s = which[start : start + rows], sample[start : start + rows]
                images = torch.full_like(tgt, image)
                grads = row_gradients(
                    module, batch[image][None] + draws[s], target_rows(target, images, tgt)
                )
                out[image].index_add_(0, tgt, grads)
    return out / samples
