"""Infidelity (Yeh et al. 2019), as Captum 0.9 `captum.metrics.infidelity`.

The perturbation I is Gaussian noise of standard deviation `infidelity_noise` on every
input value (Captum's documented example, `np.random.normal(0, 0.003)`), subtracted from
the input: infidelity = mean over `infidelity_samples` draws of
(sum(I * map) - (f(x) - f(x - I)))^2, f the target's logit, `normalize=False` as Captum's
default. A one-channel map counts for every channel. Lower is more faithful.

Randomness: a CPU `torch.Generator` seeded with `EvalBatch.seed` draws the noise as one
tensor [B, samples, C, H, W] (Captum's `repeat_interleave` order), so a test can hand the
same noise to Captum's `perturb_func`.
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


def infidelity_noise(batch: EvalBatch, samples: int, std: float) -> torch.Tensor:
    """The perturbations float32 [B * samples, C, H, W], image-major, on the CPU."""
    generator = torch.Generator().manual_seed(batch.seed)
    shape = (batch.size * samples, *batch.inputs.shape[1:])
    return torch.randn(shape, generator=generator) * std


@register_metric(
    "infidelity",
    family=FAITHFULNESS,
    reference="Captum 0.9 infidelity (Yeh et al. 2019), Gaussian perturbation",
    higher_is_better=False,
    summary="squared error of the map's linear prediction of the logit change under noise",
    parameters=PARAMETERS,
)
def infidelity(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    samples = parameters["infidelity_samples"]
    noise = infidelity_noise(batch, samples, parameters["infidelity_noise"])
    maps = torch.from_numpy(np.broadcast_to(batch.maps, tuple(batch.inputs.shape)).copy())
    maps = maps.repeat_interleave(samples, dim=0)
    explained = (maps * noise).reshape(noise.shape[0], -1).sum(dim=1).double().numpy()
    targets = batch.targets.long()
    before = target_scores(batch, batch.inputs, targets, softmax=False)
    after = np.empty(noise.shape[0])
    repeated = targets.repeat_interleave(samples)
    for start in range(0, noise.shape[0], batch.rows):
        part = slice(start, start + batch.rows)
        index = torch.arange(noise.shape[0])[part] // samples
        moved = batch.inputs[index.to(batch.inputs.device)] - noise[part].to(batch.inputs.device)
        after[part] = target_scores(batch, moved, repeated[part], softmax=False)
    change = np.repeat(before, samples) - after
    return ((explained - change) ** 2).reshape(batch.size, samples).mean(axis=1)
