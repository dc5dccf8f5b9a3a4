"""ROAD: RemOve And Debias (Rong et al. 2022), as pytorch-grad-cam's `ROADMostRelevantFirstAverage`,
`ROADLeastRelevantFirstAverage` and `ROADCombined`.

For each percentile p of `road_percentiles` (default 10, 20, ..., 90 as grad-cam's), the
pixels whose map value is at or above the map's p-th percentile (MoRF: most relevant first)
or whose inverted map (1 - map) is (LeRF) are removed and filled by the noisy linear imputer
(`imputation`, `road_noise` as grad-cam's default 0.01; each image's noise drawn by a
generator seeded with its `EvalBatch.image_seeds()` entry, plus 1 for LeRF). The
score is the change of the target's softmax probability (grad-cam's
`ClassifierOutputSoftmaxTarget`; a region's or box's score as it is, `EvalBatch.score`),
averaged over the percentiles:
- `road-morf`: lower (a larger drop) is more faithful;
- `road-lerf`: higher (a smaller drop) is more faithful;
- `road-combined`: (LeRF - MoRF) / 2, higher is more faithful.

The map is read per pixel (`prepare.pixel_saliency`) and min-max scaled per image as
pytorch-grad-cam scales its CAMs, unless it is in [0, 1] already: a map scaled twice moves
pixels tied with a threshold by float rounding, and LeRF's 1 - map needs the unit range.
All imputed images of a batch share the forward passes.
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
from service.engine.evaluation.metrics.imputation import impute
from service.engine.evaluation.metrics.passes import target_scores
from service.engine.evaluation.metrics.prepare import pixel_saliency, unit_range

PARAMETERS = {
    "road_percentiles": Parameter(
        (10, 20, 30, 40, 50, 60, 70, 80, 90),
        "percentiles of the map at which pixels are removed, comma-separated",
        "ints",
        Bound(0, 100),
        max_items=20,
    ),
    "road_noise": Parameter(
        0.01, "standard deviation of the imputer's noise (0: none)", float, Bound(0.0, 10.0)
    ),
}


def road_changes(batch: EvalBatch, parameters: Mapping[str, Any], *, morf: bool) -> np.ndarray:
    """The probability change [B, percentiles] after removing the most (or least) relevant."""
    percentiles = parameters["road_percentiles"]
    cams = unit_range(pixel_saliency(batch.maps))
    images = batch.inputs.detach().float().cpu().numpy()
    generators = [
        torch.Generator().manual_seed(s + (0 if morf else 1)) for s in batch.image_seeds()
    ]
    before = target_scores(batch, batch.inputs, batch.images(), softmax=True).astype(np.float32)
    after = np.empty(len(percentiles) * batch.size, np.float32)
    pending: list[np.ndarray] = []  # at most `rows` imputed images are held at once
    done = 0
    for percentile in percentiles:
        for cam, image, generator in zip(cams, images, generators, strict=True):
            ranked = cam if morf else 1 - cam
            keep = ranked < np.float32(np.percentile(ranked, percentile))  # as torch compares
            pending.append(impute(image, keep, noise=parameters["road_noise"], generator=generator))
            if len(pending) == batch.rows or done + len(pending) == after.size:
                perturbed = torch.from_numpy(np.stack(pending)).to(
                    batch.inputs.device, batch.inputs.dtype
                )
                which = torch.arange(done, done + len(pending)) % batch.size
                after[done : done + len(pending)] = target_scores(
                    batch, perturbed, which, softmax=True
                )
                done += len(pending)
                pending = []
    changes = after.reshape(len(percentiles), batch.size) - before[None]
    return changes.T


def _mean(changes: np.ndarray) -> np.ndarray:
    return changes.mean(axis=1, dtype=np.float32).astype(np.float64)


@register_metric(
    "road-morf",
    family=FAITHFULNESS,
    reference="pytorch-grad-cam 1.5 ROADMostRelevantFirstAverage (Rong et al. 2022)",
    higher_is_better=False,
    summary="probability change after imputing the most relevant pixels, mean over percentiles",
    parameters=PARAMETERS,
)
def road_morf(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    return _mean(road_changes(batch, parameters, morf=True))


@register_metric(
    "road-lerf",
    family=FAITHFULNESS,
    reference="pytorch-grad-cam 1.5 ROADLeastRelevantFirstAverage (Rong et al. 2022)",
    higher_is_better=True,
    summary="probability change after imputing the least relevant pixels, mean over percentiles",
    parameters=PARAMETERS,
)
def road_lerf(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    return _mean(road_changes(batch, parameters, morf=False))


@register_metric(
    "road-combined",
    family=FAITHFULNESS,
    reference="pytorch-grad-cam 1.5 ROADCombined (Rong et al. 2022)",
    higher_is_better=True,
    summary="(LeRF - MoRF) / 2 of the ROAD probability changes",
    parameters=PARAMETERS,
)
def road_combined(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    lerf = _mean(road_changes(batch, parameters, morf=False))
    morf = _mean(road_changes(batch, parameters, morf=True))
    return (lerf - morf) / 2
