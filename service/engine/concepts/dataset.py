"""Deep Feature Factorization over a dataset: one NMF over the maps of `limit` pictures, and
each concept's exemplars (the pictures where its mean loading is largest).

The pictures stream through the model in batches on the device thread; their maps at the
layer are kept (the NMF needs them all at once), bounded by MAX_BYTES: a plan whose maps
would exceed it is refused before any compute, naming the cap and the size asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from model_registry.datasets import Dataset
from model_registry.errors import ClientError, InvalidInput
from model_registry.registry import LoadedModel
from service.engine.checks import Bound
from service.engine.concepts.factorize import (
    ClassScores,
    ConceptPlan,
    class_scores,
    factorize,
    layer_maps,
)
from service.engine.images import decode_image, preprocess
from service.engine.progress import Progress, no_progress

log = logging.getLogger("layerscope")

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
    layout = model.catalog.get(plan.layer).map_layout
    assert layout is not None  # checked by plan_concepts
    channels, height, width = layout.shape
    size = count * channels * height * width * 4
    if size > MAX_BYTES:
        fits = MAX_BYTES // (channels * height * width * 4)
        raise InvalidInput(
            f"limit: {count} pictures of '{plan.layer}' need {size / 2**20:.0f} MiB of maps, "
            f"the cap is {MAX_BYTES // 2**20} MiB ({fits} pictures at this layer)",
            field="limit",
            valid_range=[2, int(fits)],
        )


def dataset_concepts(
    model: LoadedModel,
    dataset: Dataset,
    plan: ConceptPlan,
    indices: np.ndarray,
    *,
    exemplars: int,
    max_pixels: int,
    progress: Progress = no_progress,
) -> DatasetConcepts:
    """Stream the pictures, factorize their maps, rank each concept's pictures. `progress`
    counts pictures after each batch and may raise `Cancelled` between batches."""
    maps: list[np.ndarray] = []
    kept: list[int] = []
    total = len(indices)
    for start in range(0, total, BATCH):
        images = []
        for index in indices[start : start + BATCH]:
            try:
                data = dataset.read(int(index))
                images.append(decode_image(data, max_pixels=max_pixels, index=int(index)))
                kept.append(int(index))
            except (OSError, ClientError):
                log.warning("dataset %s: skipped %s", dataset.name, dataset.describe(int(index)))
        if images:
            maps.append(layer_maps(model, preprocess(images, model.spec, model.device), plan))
        progress(min(start + BATCH, total), total)
    if len(kept) < 2:
        raise InvalidInput(
            f"dataset: only {len(kept)} of {total} pictures could be read", field="dataset"
        )
    found = factorize(np.concatenate(maps), plan.k)
    strength = found.strength
    # largest first; equal strengths by lower dataset index (kept is in dataset order)
    order = [np.lexsort((np.arange(len(kept)), -strength[:, k]))[:exemplars] for k in range(plan.k)]
    scores, why = class_scores(model, found.concepts)
    return DatasetConcepts(np.asarray(kept, dtype=np.int64), strength, order, scores, why)
