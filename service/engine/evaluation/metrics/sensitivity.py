"""Max- and avg-sensitivity (Yeh et al. 2019), as Quantus 0.6 `MaxSensitivity` and
`AvgSensitivity` with their defaults.

`samples` times, uniform noise in [-radius, radius] is added to every input value, the
method explains the noisy input for the same target (`EvalBatch.explain`), and the change
is ||map - noisy map||_F / ||map||_F on the raw maps (no normalisation, no abs). The score is
the largest (`max-sensitivity`) or the mean (`avg-sensitivity`) over the samples, ignoring
NaN; lower is more robust.

Randomness: each image draws its noise sample by sample from its own
`numpy.random.RandomState(EvalBatch.image_seeds()[i])`, as Quantus draws it from numpy's
global generator for a batch of that one image after `np.random.seed` of that seed.
Re-explanations are batched: every noisy copy of every image of the batch goes through the
method in one call (samples x images inputs), as many samples per call as `NOISY_BYTES`
holds, since the method's own passes chunk what they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from service.engine.checks import Bound
from service.engine.evaluation.metrics.base import (
    NEEDS_EXPLAIN,
    ROBUSTNESS,
    EvalBatch,
    Parameter,
    register_metric,
)

SAMPLES = Bound(1, 1000)
NOISY_BYTES = 64 * 2**20  # noisy inputs, their noise and their maps held per explain call
PARAMETERS = {
    "samples": Parameter(200, "noisy inputs per image", int, SAMPLES),
    "radius": Parameter(
        0.2, "the noise is uniform in [-radius, radius]", float, Bound(0.0, 10.0, True)
    ),
}


def sensitivities(batch: EvalBatch, samples: int, radius: float) -> np.ndarray:
    """||map - map(x + noise)|| / ||map|| per image and sample -> [B, samples]."""
    if batch.explain is None:
        raise ValueError("a robustness metric needs EvalBatch.explain")
    count = batch.size
    rngs = [np.random.RandomState(seed) for seed in batch.image_seeds()]
    flat = batch.inputs.detach().reshape(count, -1)
    maps = batch.maps.reshape(count, -1).astype(np.float64)
    norms = np.linalg.norm(maps, axis=-1)
    out = np.full((count, samples), np.nan)
    per_input = 8 * (2 * flat.shape[1] + maps.shape[1])  # noise, noisy input, map (float64)
    per_call = max(1, min(samples, NOISY_BYTES // (count * per_input)))
    for start in range(0, samples, per_call):
        steps = min(per_call, samples - start)
        # [steps, B, N], sample-major as `EvalBatch.explain` takes copies of the batch
        noise = np.stack(
            [rng.uniform(-radius, radius, size=(steps, flat.shape[1])) for rng in rngs], axis=1
        )
        noisy = flat[None] + torch.from_numpy(noise).to(flat.device, flat.dtype)
        shaped = noisy.reshape(-1, *batch.inputs.shape[1:])
        again = batch.explain(shaped, batch.targets.repeat(steps))
        again = np.asarray(again, np.float64).reshape(steps, count, -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, start : start + steps] = (
                np.linalg.norm(maps[None] - again, axis=-1) / norms[None]
            ).T
    return out


@register_metric(
    "max-sensitivity",
    family=ROBUSTNESS,
    reference="Quantus 0.6 MaxSensitivity (Yeh et al. 2019)",
    higher_is_better=False,
    summary="largest relative change of the map under small uniform input noise",
    needs=(NEEDS_EXPLAIN,),
    parameters=PARAMETERS,
)
def max_sensitivity(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    values = sensitivities(batch, parameters["samples"], parameters["radius"])
    with np.errstate(invalid="ignore"):
        return np.fmax.reduce(values, axis=1)


@register_metric(
    "avg-sensitivity",
    family=ROBUSTNESS,
    reference="Quantus 0.6 AvgSensitivity (Yeh et al. 2019)",
    higher_is_better=False,
    summary="mean relative change of the map under small uniform input noise",
    needs=(NEEDS_EXPLAIN,),
    parameters=PARAMETERS,
)
def avg_sensitivity(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    values = sensitivities(batch, parameters["samples"], parameters["radius"])
    counted = np.isfinite(values).sum(axis=1)
    total = np.where(np.isfinite(values), values, 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, total / np.maximum(counted, 1), np.nan)
