"""Deep Feature Factorization over a dataset: one NMF over the maps of `limit` pictures, and
each concept's exemplars (the pictures where its mean loading is largest).

The pictures stream through the model in batches on the device thread; their maps at the
layer are kept (the NMF needs them all at once), bounded by MAX_BYTES: a plan whose maps
would exceed it is refused before any compute, naming the cap and the size asked. A job runs
the pictures in slices, perhaps on several replicas (issue 31): each slice's partial holds
its pictures' maps, and the merge joins them in slice order and factorizes once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model_registry.datasets import Dataset
from model_registry.errors import InvalidInput
from model_registry.layout import MapLayout
from model_registry.registry import LoadedModel
from service.engine.checks import Bound
from service.engine.concepts.factorize import (
    ClassScores,
    ConceptPlan,
    class_scores,
    factorize,
    layer_maps,
)
from service.engine.dataset.pictures import picture_batches
from service.engine.images import preprocess
from service.engine.partials import Partial, concat
from service.engine.progress import Progress, no_progress

MAX_BYTES = 256 * 2**20  # the kept maps of every picture, float32
EXEMPLARS = Bound(1, 64)
BATCH = 32


@dataclass(frozen=True)
class DatasetConcepts:
    """Attributes:
    indices: the pictures factorized (unreadable ones left out), in order.
    strength: float32 [N, K], each concept's mean loading per picture.
    exemplars: per concept, the indices into `indices` of its strongest pictures, first.
    scores, why: the concepts' classes, or why there are none (see `class_scores`).
    """

    indices: np.ndarray
    strength: np.ndarray
    exemplars: list[np.ndarray]
    scores: ClassScores | None
    why: str | None


def sample_indices(dataset: Dataset, limit: int | None, seed: int) -> np.ndarray:
    """All pictures, or a seeded sample of `limit`, in dataset order."""
    total = len(dataset)
    if limit is None or limit >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, limit, replace=False))


def check_size(model: LoadedModel, plan: ConceptPlan, count: int) -> None:
    """422 when `count` pictures' maps at the layer exceed MAX_BYTES."""
    channels, height, width = _layout(model, plan).shape
    size = count * channels * height * width * 4
    if size > MAX_BYTES:
        fits = MAX_BYTES // (channels * height * width * 4)
        raise InvalidInput(
            f"limit: {count} pictures of '{plan.layer}' need {size / 2**20:.0f} MiB of maps, "
            f"the cap is {MAX_BYTES // 2**20} MiB ({fits} pictures at this layer)",
            field="limit",
            valid_range=[2, int(fits)],
        )


def concepts_slice(
    model: LoadedModel,
    dataset: Dataset,
    plan: ConceptPlan,
    indices: Sequence[int],
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """A slice of the job's pictures through the model: `indices` int64 [n] of the pictures
    read, `maps` float32 [n, C, h, w] their maps at the layer, `skipped` the count of those
    that could not be read. `progress` counts the slice's pictures after each batch and may
    raise `Cancelled` between batches."""
    channels, height, width = _layout(model, plan).shape
    maps: list[np.ndarray] = []
    kept: list[int] = []
    for part in picture_batches(dataset, indices, BATCH, max_pixels):
        if part.images:
            maps.append(layer_maps(model, preprocess(part.images, model.spec, model.device), plan))
            kept.extend(part.indices)
        progress(part.end, len(indices))
    empty = np.zeros((0, channels, height, width), dtype=np.float32)
    return {
        "indices": np.asarray(kept, dtype=np.int64),
        "maps": np.concatenate(maps) if maps else empty,
        "skipped": np.asarray(len(indices) - len(kept), dtype=np.int64),
    }


def merge_concepts(
    partials: Sequence[Partial],
    model: LoadedModel,
    plan: ConceptPlan,
    *,
    exemplars: int,
    total: int,
) -> DatasetConcepts:
    """The slices' maps joined in slice order and factorized once (the NMF needs them all),
    so the concepts are those of one pass; each concept's pictures ranked.

    Raises:
        InvalidInput: fewer than 2 of the `total` pictures could be read.
    """
    kept = concat(partials, "indices", empty=np.zeros(0, dtype=np.int64))
    if len(kept) < 2:
        raise InvalidInput(
            f"dataset: only {len(kept)} of {total} pictures could be read", field="dataset"
        )
    channels, height, width = _layout(model, plan).shape
    empty = np.zeros((0, channels, height, width), dtype=np.float32)
    found = factorize(concat(partials, "maps", empty=empty), plan.k)
    strength = found.strength
    # largest first; equal strengths by lower dataset index (kept is in dataset order)
    order = [np.lexsort((np.arange(len(kept)), -strength[:, k]))[:exemplars] for k in range(plan.k)]
    scores, why = class_scores(model, found.concepts)
    return DatasetConcepts(kept, strength, order, scores, why)


def _layout(model: LoadedModel, plan: ConceptPlan) -> MapLayout:
    layout = model.catalog.get(plan.layer).map_layout
    assert layout is not None  # checked by plan_concepts
    return layout
