"""The batched passes shared by occlusion and feature ablation, as Captum's FeatureAblation.

For each part k of an image (a boolean mask m_k [H, W] over every channel) the model runs
on x * (1 - m_k) + baseline * m_k; each pixel's attribution is the sum over the parts that
cover it of score(x) - score(perturbed), divided by how many parts cover it when
`average` (Captum's Occlusion) and not otherwise (FeatureAblation, whose parts are
disjoint). `per_pass` perturbed inputs share one forward pass (Captum's
`perturbations_per_eval`), and every target reuses the same passes. On CPU a pass computes
the early layers only around each part's bounding box (`incremental`), to the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from service.engine.attribution.perturbation.incremental import IncrementalForward, mask_boxes
from service.engine.attribution.target_objects import Target
from service.engine.progress import report

# (image, first part, end) -> float masks [n, H, W] of parts first..end-1 of that image
Parts = Callable[[int, int, int], torch.Tensor]


def channels_last(inputs: torch.Tensor) -> torch.Tensor:
    """A batch of perturbed images laid out channels-last: oneDNN's convolutions run a
    quarter faster on it (resnet18, 16 x 224 px, CPU; bench/methods.py), and the model's
    own weights are left as they are. Other ranks are returned unchanged."""
    return inputs.contiguous(memory_format=torch.channels_last) if inputs.ndim == 4 else inputs


def ablation_attributions(
    module: nn.Module,
    batch: torch.Tensor,
    output: Any,
    target: Target,
    reference: torch.Tensor,
    *,
    parts: Parts,
    counts: list[int],
    per_pass: int,
    average: bool,
) -> torch.Tensor:
    """Attributions [B, T, C, H, W] of every image and target.

    Args:
        batch: [B, C, H, W]; output: the model's output on it; reference: the baseline,
            same shape as `batch`.
        target: the targets explained; `target.scores` reads every pass.
        parts: the masks of the parts; counts: how many parts each image has.
        per_pass: perturbed inputs per forward pass.
        average: divide by the number of parts covering each pixel (occlusion).
    """
    count, channels, height, width = batch.shape
    out = torch.zeros(count, target.count, channels, height, width, device=batch.device)
    everything = sum(counts)
    done = 0
    with torch.inference_mode():
        base = target.scores(output, torch.arange(count, device=batch.device)).float()
        for image in range(count):
            x, ref = batch[image : image + 1], reference[image : image + 1]
            # Python's crop bookkeeping costs more than it saves next to a GPU's pass
            forward = IncrementalForward(module, x) if x.device.type == "cpu" else None
            total = torch.zeros(target.count, height, width, device=batch.device)
            cover = torch.zeros(height, width, device=batch.device)
            for first in range(0, counts[image], per_pass):
                end = min(first + per_pass, counts[image])
                masks = parts(image, first, end).to(batch.dtype)
                keep = masks[:, None]
                perturbed = channels_last(x * (1 - keep) + ref * keep)
                rows = torch.full((end - first,), image, device=batch.device)
                outputs = (
                    forward(perturbed, mask_boxes(masks != 0)) if forward else module(perturbed)
                )
                scores = target.scores(outputs, rows).float()
                total += torch.einsum("nt,nhw->thw", base[image] - scores, masks.float())
                cover += masks.float().sum(dim=0)
                done += end - first
                report(done, everything)
            if average:
                total = total / cover
            out[image] = total[:, None]
    return out
