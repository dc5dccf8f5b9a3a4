"""Localisation (Quantus 0.6): does the map point at the object? Each needs a mask per image
(`EvalBatch.masks`, True on the object); an image whose mask is empty scores NaN.

The map is read per pixel (`prepare.pixel_saliency`), normalised by its max, not made
absolute (Quantus's defaults for these three):
- `pointing-game` (Zhang et al. 2018): 1 when a pixel of the map's maximum lies on the object;
- `relevance-mass` (Arras et al. 2022): the share of the map's sum inside the mask;
- `relevance-rank` (Arras et al. 2022): of the K most relevant pixels (K = mask size), the
  share inside the mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.engine.evaluation.metrics.base import (
    LOCALISATION,
    NEEDS_MASKS,
    EvalBatch,
    register_metric,
)
from service.engine.evaluation.metrics.prepare import normalise_by_max, pixel_saliency


def _flat(batch: EvalBatch) -> tuple[np.ndarray, np.ndarray]:
    maps = normalise_by_max(pixel_saliency(batch.maps)).reshape(batch.size, -1)
    if batch.masks is None:
        raise ValueError("a localisation metric needs EvalBatch.masks")
    return maps, np.asarray(batch.masks, bool).reshape(batch.size, -1)


@register_metric(
    "pointing-game",
    family=LOCALISATION,
    reference="Quantus 0.6 PointingGame (Zhang et al. 2018)",
    higher_is_better=True,
    summary="1 when the map's maximum lies on the object, else 0",
    needs=(NEEDS_MASKS,),
)
def pointing_game(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    maps, masks = _flat(batch)
    peak = maps == maps.max(axis=-1, keepdims=True)
    hit = np.any(masks & peak, axis=-1).astype(np.float64)
    hit[masks.sum(axis=-1) == 0] = np.nan
    return hit


@register_metric(
    "relevance-mass",
    family=LOCALISATION,
    reference="Quantus 0.6 RelevanceMassAccuracy (Arras et al. 2022)",
    higher_is_better=True,
    summary="share of the map's sum that lies on the object",
    needs=(NEEDS_MASKS,),
)
def relevance_mass(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    maps, masks = _flat(batch)
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = (maps * masks).sum(-1) / maps.sum(-1)
    mass[masks.sum(axis=-1) == 0] = np.nan
    return mass


@register_metric(
    "relevance-rank",
    family=LOCALISATION,
    reference="Quantus 0.6 RelevanceRankAccuracy (Arras et al. 2022)",
    higher_is_better=True,
    summary="share of the K most relevant pixels on the object (K: the object's size)",
    needs=(NEEDS_MASKS,),
)
def relevance_rank(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    maps, masks = _flat(batch)
    sizes = masks.sum(-1)
    order = np.argsort(-maps, axis=-1)  # Quantus's sort, ties in numpy's order
    ranked = masks[np.arange(batch.size)[:, None], order]
    top = np.arange(maps.shape[-1])[None, :] < sizes[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        rank = (ranked & top).sum(-1) / sizes
    rank = rank.astype(np.float64)
    rank[sizes == 0] = np.nan
    return rank
