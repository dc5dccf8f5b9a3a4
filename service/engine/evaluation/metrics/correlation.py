"""Faithfulness correlation (Bhatt et al. 2020), as Quantus 0.6 `FaithfulnessCorrelation`.

For `correlation_runs` random subsets of `correlation_subset` input features (values of
the flattened [C, H, W] input, drawn without replacement), the features are set to the
image's minimum (Quantus's "black" baseline) and the drop of the target's logit (a region's
or box's score, `EvalBatch.score`) is paired
with the sum of the map over those features (a one-channel map counts once per channel).
The score is Pearson's r over the runs, in [-1, 1]: higher is more faithful.

Randomness: each image draws its subsets run by run from its own
`numpy.random.RandomState(EvalBatch.image_seeds()[i])`, as Quantus draws them from numpy's
global generator for a batch of that one image after `np.random.seed` of that seed
(including the unused uniform fill its baseline table draws each run, so the two agree).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import ConstantInputWarning, pearsonr

from model_registry.errors import InvalidInput
from service.engine.checks import Bound
from service.engine.evaluation.metrics.base import (
    FAITHFULNESS,
    EvalBatch,
    Parameter,
    register_metric,
)
from service.engine.evaluation.metrics.passes import target_scores
from service.engine.evaluation.metrics.prepare import normalise_by_max

PARAMETERS = {
    "correlation_runs": Parameter(100, "random subsets per image", int, Bound(2, 1000)),
    "correlation_subset": Parameter(
        224, "input features per subset", int, Bound(1, 1 << 20), counts_input_values=True
    ),
}


def subsets(rngs: list[np.random.RandomState], runs: int, features: int, size: int) -> np.ndarray:
    """The next `runs` runs' feature indices int64 [runs, B, size], image i's drawn from
    `rngs[i]` as Quantus draws them for that image alone (run by run)."""
    drawn = np.empty((runs, len(rngs), size), dtype=np.int64)
    for image, rng in enumerate(rngs):
        for run in range(runs):
            drawn[run, image] = rng.choice(features, size, replace=False)
            rng.uniform(size=1)  # Quantus's baseline table draws a "uniform" fill each run
    return drawn


@register_metric(
    "faithfulness-correlation",
    family=FAITHFULNESS,
    reference="Quantus 0.6 FaithfulnessCorrelation (Bhatt et al. 2020)",
    higher_is_better=True,
    summary="Pearson r of the map's sum over random subsets and the logit drop they cause",
    parameters=PARAMETERS,
)
def faithfulness_correlation(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    runs, size = parameters["correlation_runs"], parameters["correlation_subset"]
    count = batch.size
    flat = batch.inputs.reshape(count, -1)
    features = flat.shape[1]
    if size > features:
        raise InvalidInput(
            f"correlation_subset: {size} is more than the {features} input features",
            field="correlation_subset",
            valid_range=[1, features],
        )
    maps = normalise_by_max(np.broadcast_to(batch.maps, tuple(batch.inputs.shape)))
    maps = maps.reshape(count, -1)
    rngs = [np.random.RandomState(seed) for seed in batch.image_seeds()]
    black = flat.min(dim=1, keepdim=True).values
    images = batch.images()
    before = target_scores(batch, batch.inputs, images, softmax=False)
    sums = np.empty((count, runs))
    after = np.empty((runs, count))
    per_pass = max(1, batch.rows // count)
    for start in range(0, runs, per_pass):
        # drawn a pass at a time (same order): all runs' indices at once would be
        # runs x B x subset int64, gigabytes for 1000 runs of a whole 224 px image
        picked = subsets(rngs, min(per_pass, runs - start), features, size)
        stop = start + picked.shape[0]
        sums[:, start:stop] = np.take_along_axis(maps[None], picked, axis=2).sum(-1).T
        chunk = torch.from_numpy(picked).to(flat.device)  # [r, B, size]
        perturbed = flat[None].repeat(chunk.shape[0], 1, 1)
        perturbed.scatter_(2, chunk, black[None].expand(*chunk.shape))
        shaped = perturbed.reshape(-1, *batch.inputs.shape[1:])
        scores = target_scores(batch, shaped, images.repeat(chunk.shape[0]), softmax=False)
        after[start:stop] = scores.reshape(chunk.shape[0], count)
    drops = before[:, None] - after.T  # [B, runs]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)  # a constant map: NaN, as scipy says
        return np.asarray(pearsonr(sums, drops, axis=1).statistic, dtype=np.float64)
