"""Infidelity (Yeh et al. 2019), as Captum 0.9 `captum.metrics.infidelity`.

The perturbation I is Gaussian noise of standard deviation `infidelity_noise` on every
input value (Captum's documented example, `np.random.normal(0, 0.003)`), subtracted from
the input: infidelity = mean over `infidelity_samples` draws of
(sum(I * map) - (f(x) - f(x - I)))^2, f the target's logit (a region's or box's score,
`EvalBatch.score`), `normalize=False` as Captum's
default. A one-channel map counts for every channel. Lower is more faithful.

Randomness: each image's noise [samples, C, H, W] is drawn by a CPU `torch.Generator`
seeded with its `EvalBatch.image_seeds()` entry (stacked in Captum's `repeat_interleave`
order), so a test can hand the same noise to Captum's `perturb_func`; a few images at a time
are held in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from service.engine.checks import Bound
from service.engine.evaluation.metrics.base import (
    FAITHFULNESS,
    EvalBatch,
    Parameter,
    register_metric,
)
from service.engine.evaluation.metrics.passes import target_scores

PARAMETERS = {
    "infidelity_samples": Parameter(10, "perturbations per image", int, Bound(1, 1000)),
    "infidelity_noise": Parameter(
        0.003, "standard deviation of the Gaussian perturbation", float, Bound(0.0, 10.0, True)
    ),
}


def infidelity_noise(generator: torch.Generator, shape: torch.Size, samples: int, std: float):
    """The next image's perturbations float32 [samples, C, H, W], on the CPU."""
    return torch.randn((samples, *shape), generator=generator) * std


@register_metric(
    "infidelity",
    family=FAITHFULNESS,
    reference="Captum 0.9 infidelity (Yeh et al. 2019), Gaussian perturbation",
    higher_is_better=False,
    summary="squared error of the map's linear prediction of the logit change under noise",
    parameters=PARAMETERS,
)
def infidelity(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    samples, std = parameters["infidelity_samples"], parameters["infidelity_noise"]
    seeds = batch.image_seeds()
    maps = np.broadcast_to(batch.maps, tuple(batch.inputs.shape))
    before = target_scores(batch, batch.inputs, batch.images(), softmax=False)
    out = np.empty(batch.size)
    group = max(1, batch.rows // samples)  # images whose perturbations share a forward pass
    for first in range(0, batch.size, group):
        images = range(first, min(batch.size, first + group))
        noise = torch.cat(
            [
                infidelity_noise(
                    torch.Generator().manual_seed(seeds[i]), batch.inputs.shape[1:], samples, std
                )
                for i in images
            ]
        )
        weights = torch.from_numpy(np.repeat(maps[first : images.stop], samples, axis=0))
        explained = (weights * noise).reshape(noise.shape[0], -1).sum(dim=1).double().numpy()
        moved = batch.inputs[first : images.stop].repeat_interleave(samples, dim=0)
        moved = moved - noise.to(moved.device, moved.dtype)
        repeated = torch.arange(first, images.stop).repeat_interleave(samples)
        after = target_scores(batch, moved, repeated, softmax=False)
        change = np.repeat(before[first : images.stop], samples) - after
        out[first : images.stop] = ((explained - change) ** 2).reshape(-1, samples).mean(axis=1)
    return out
