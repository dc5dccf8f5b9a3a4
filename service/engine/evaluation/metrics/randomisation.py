"""Randomisation (Quantus 0.6): does the map depend on the model?

- `randomization`: Quantus's `MPRT` (Adebayo et al. 2018), the cascading model parameter
  randomization test. At depth d the top d parametrized layers of a copy of the model are
  re-initialized (`evaluation.cascade.randomized_copies`; `EvalBatch.explain_randomized(d)`
  gives the maps there), and the similarity with the original map is Spearman's rank
  correlation of |map| (Quantus's abs=True, normalised by max). The answer is a `Cascade`:
  the similarity per depth, the first depth below `decorrelation_threshold`, and per image
  the mean similarity over the randomized depths (Quantus's `return_average_correlation`,
  without the unrandomized model's own correlation that Quantus 0.6 averages in by a key
  slip), lower is better: a map that explains the model changes as the model is randomized.
- `random-logit`: Quantus's `RandomLogit` (Sixt et al. 2020): the SSIM (scikit-image,
  on the flattened maps, data range of both) between the map of the target and the map
  of a random other class, drawn by `numpy.random.RandomState` of the image's seed
  (`EvalBatch.image_seeds()`) as Quantus draws it for that image alone with that `seed`;
  lower is better (a class-sensitive map differs).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from skimage.metrics import structural_similarity

from service.engine.attribution.sanity import rank_correlation
from service.engine.checks import Bound
from service.engine.evaluation.metrics.base import (
    NEEDS_EXPLAIN,
    NEEDS_RANDOMIZED,
    RANDOMISATION,
    Cascade,
    EvalBatch,
    Parameter,
    register_metric,
)
from service.engine.evaluation.metrics.passes import logits
from service.engine.evaluation.metrics.prepare import flat_abs, normalise_by_max

PARAMETERS = {
    "depths": Parameter(
        0, "layers randomized, top first (0: every parametrized layer)", int, Bound(0, 10000)
    ),
    "decorrelation_threshold": Parameter(
        0.5, "rank correlation below which a map counts as decorrelated", float, Bound(-1.0, 1.0)
    ),
}


@register_metric(
    "randomization",
    family=RANDOMISATION,
    reference="Quantus 0.6 MPRT (Adebayo et al. 2018), cascading top-down",
    higher_is_better=False,
    summary="rank correlation of the map with maps of a cascade of randomized models",
    needs=(NEEDS_RANDOMIZED,),
    parameters=PARAMETERS,
)
def randomization(batch: EvalBatch, parameters: Mapping[str, Any]) -> Cascade:
    if batch.explain_randomized is None:
        raise ValueError("randomization needs EvalBatch.explain_randomized")
    layers = batch.randomizable
    if parameters["depths"]:
        layers = layers[: parameters["depths"]]
    original = flat_abs(batch.maps)[:, None]
    columns = []
    for depth in range(1, len(layers) + 1):
        again = flat_abs(batch.explain_randomized(depth))[:, None]
        columns.append(rank_correlation(original, again))  # [B, 1, N] rows -> [B]
    similarity = np.stack(columns, axis=1) if columns else np.empty((batch.size, 0))
    threshold = parameters["decorrelation_threshold"]
    below = similarity < threshold
    first = np.where(below.any(axis=1), below.argmax(axis=1) + 1.0, np.nan)
    with warnings.catch_warnings():  # an image constant at every depth: NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        values = np.nanmean(similarity, axis=1) if columns else np.full(batch.size, np.nan)
    return Cascade(values, tuple(layers), similarity, first, threshold)


def off_targets(seeds: list[int], targets: np.ndarray, classes: int) -> np.ndarray:
    """A random class other than each target, drawn with the image's seed as Quantus's
    RandomLogit draws it for one image."""
    picks = np.array([np.random.RandomState(seed).randint(0, classes - 1) for seed in seeds])
    return picks + (picks >= targets)  # the picks-th class once the target is left out


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Quantus's `ssim` of two flattened maps (scikit-image, default window)."""
    both = np.concatenate([first, second])
    span = float(np.abs(both.max() - both.min()))
    return float(structural_similarity(first, second, data_range=span))


@register_metric(
    "random-logit",
    family=RANDOMISATION,
    reference="Quantus 0.6 RandomLogit (Sixt et al. 2020), SSIM",
    higher_is_better=False,
    summary="SSIM of the target's map with the map of a random other class",
    needs=(NEEDS_EXPLAIN,),
    classes_only="it compares the target's map with the map of a random other class of a "
    "classifier, and a region or box target has no other class to explain",
)
def random_logit(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    if batch.explain is None:
        raise ValueError("random-logit needs EvalBatch.explain")
    classes = int(logits(batch, batch.inputs[:1]).shape[1])
    targets = batch.targets.long().cpu().numpy()
    others = torch.from_numpy(off_targets(batch.image_seeds(), targets, classes))
    mine = normalise_by_max(batch.maps).reshape(batch.size, -1)
    theirs = normalise_by_max(np.asarray(batch.explain(batch.inputs, others)))
    theirs = theirs.reshape(batch.size, -1)
    return np.array([ssim(a, b) for a, b in zip(mine, theirs, strict=True)])
