"""An evaluation over a dataset, streamed in batches: every method on every metric for each
picture, then summarised (`summary`).

Pictures are drawn as the other dataset jobs draw them (`limit` of them with `seed`, sorted)
before the job is split into slices (`evaluate_slice`, one shard's partial each; the merge
joins them in slice order, `merge_slices`); a picture that cannot be read is skipped and
listed, one without a mask is counted and left out of the localisation metrics only.
`progress(done, total)` runs after each batch and may raise `Cancelled` there. Runs on the
device thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from model_registry.datasets import Dataset, match_classes
from model_registry.errors import ClientError, InvalidInput
from model_registry.registry import LoadedModel
from service.engine.evaluation.masks import dataset_masks
from service.engine.evaluation.metrics import Cascade
from service.engine.evaluation.plan import EvalPlan
from service.engine.evaluation.run import (
    BatchScores,
    RandomizedCopies,
    Values,
    evaluate_batch,
    predicted,
)
from service.engine.images import decode_image, preprocess
from service.engine.partials import Partial, concat
from service.engine.progress import Progress, no_progress

log = logging.getLogger("layerscope")

MAX_LIMIT = 5000  # pictures per dataset evaluation: 422 beyond
BATCH = 32  # pictures per batch: every method and metric runs on one batch at a time
PREDICTED, LABEL = "predicted", "label"
RANDOMIZATION = "randomization"
TARGETS = (PREDICTED, LABEL)


@dataclass(frozen=True)
class DatasetScores:
    """Per-picture values of every method and metric, for the pictures read."""

    indices: np.ndarray  # int64 [N], dataset indices
    values: Values  # method -> metric -> float64 [N]
    skipped: tuple[int, ...]
    without_mask: int  # pictures read that have no mask (0 when no metric needs one)
    # randomization's detail per method (empty without it): `Cascade.values`,
    # `similarity` [N, depths] and `decorrelated_at` [N] for the pictures read
    cascades: dict[str, Cascade] = field(default_factory=dict)


def pick_indices(dataset: Dataset, limit: int | None, seed: int) -> tuple[int, ...]:
    """All pictures, or `limit` of them drawn with `seed`, ascending."""
    size = len(dataset)
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"limit: {limit} is outside 1..{MAX_LIMIT}", field="limit", valid_range=[1, MAX_LIMIT]
        )
    count = min(size, limit if limit is not None else MAX_LIMIT)
    if count == size:
        return tuple(range(size))
    rng = np.random.default_rng(seed)
    return tuple(int(i) for i in np.sort(rng.choice(size, count, replace=False)))


def class_map(model: LoadedModel, dataset: Dataset, target: str) -> tuple[int, ...] | None:
    """The model output index of each dataset class when `target=label` (422 without one)."""
    if target != LABEL:
        return None
    labels = [model.label(i) for i in range(model.spec.num_classes)]
    found = match_classes(dataset.classes, labels)
    if found is None:
        raise InvalidInput(
            f"target: the classes of dataset '{dataset.name}' do not match the labels of model "
            f"'{model.name}'; send target=predicted",
            field="target",
        )
    return found


def evaluate_slice(
    model: LoadedModel,
    dataset: Dataset,
    plan: EvalPlan,
    indices: Sequence[int],
    *,
    classes: tuple[int, ...] | None,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """Every method and metric over a slice of the plan's pictures, as a shard's partial:
    `indices` (read, int64 [n]), `skipped` (int64), `without_mask` (0-d), `values` float64
    [n, methods, metrics] in plan order and, with `randomization`, `similarity` float64
    [n, methods, depths] and `decorrelated_at` float64 [n, methods]. Target: the label's
    class (`classes` maps dataset classes to model outputs) or, when None, each picture's
    top-1 class. A picture's values depend only on it and the plan (its draws are seeded by
    its dataset index), so any slicing gives the same values."""
    copies = RandomizedCopies(model)
    kept: list[int] = []
    skipped: list[int] = []
    parts: list[BatchScores] = []
    without = 0
    total = len(indices)
    for start in range(0, total, BATCH):
        pictures, read = [], []
        for index in indices[start : start + BATCH]:
            try:
                pictures.append(decode_image(dataset.read(index), max_pixels=max_pixels))
                read.append(index)
            except (OSError, ClientError):
                log.warning("dataset %s: skipped %s", dataset.name, dataset.describe(index))
                skipped.append(index)
        if pictures:
            masks = None
            if plan.needs_masks:
                sizes = [picture.size for picture in pictures]
                masks = dataset_masks(dataset, read, sizes, model.spec, max_pixels=max_pixels)
                without += sum(mask is None for mask in masks)
            batch = preprocess(pictures, model.spec, model.device)
            if classes is None:
                targets = predicted(model, batch)
            else:
                targets = torch.tensor([classes[dataset.label(i)] for i in read])
            parts.append(
                evaluate_batch(
                    model,
                    batch,
                    targets.to(model.device),
                    plan,
                    masks=masks,
                    copies=copies,
                    keys=read,
                )
            )
            kept.extend(read)
        progress(min(start + BATCH, total), total)
    return _partial(plan, parts, kept, skipped, without)


def _partial(
    plan: EvalPlan, parts: list[BatchScores], kept: list[int], skipped: list[int], without: int
) -> Partial:
    methods = [e.method for e in plan.explainers]
    metrics = [c.name for c in plan.metrics]
    values = np.zeros((0, len(methods), len(metrics)))
    if parts:
        values = np.concatenate(
            [
                np.stack([np.stack([p.values[m][k] for k in metrics], 1) for m in methods], 1)
                for p in parts
            ]
        )
    partial: Partial = {
        "indices": np.asarray(kept, dtype=np.int64),
        "skipped": np.asarray(skipped, dtype=np.int64),
        "without_mask": np.asarray(without, dtype=np.int64),
        "values": values,
    }
    if RANDOMIZATION in metrics and parts:
        partial["similarity"] = np.concatenate(
            [np.stack([p.cascades[m].similarity for m in methods], 1) for p in parts]
        )
        partial["decorrelated_at"] = np.concatenate(
            [np.stack([p.cascades[m].decorrelated_at for m in methods], 1) for p in parts]
        )
    return partial


def merge_slices(
    plan: EvalPlan, partials: Sequence[Partial], layers: tuple[str, ...]
) -> DatasetScores:
    """Every slice's partial, in slice order, as one `DatasetScores`; `layers` the cascade's
    layers (`RandomizedCopies(model).layers`).

    Raises:
        InvalidInput: no slice read any picture.
    """
    methods = [e.method for e in plan.explainers]
    choices = list(plan.metrics)
    indices = concat(partials, "indices", empty=np.zeros(0, np.int64))
    skipped = concat(partials, "skipped", empty=np.zeros(0, np.int64))
    if not indices.size:
        raise InvalidInput(
            f"dataset: none of the {skipped.size} pictures could be read", field="dataset"
        )
    values = concat(partials, "values", empty=np.zeros((0, len(methods), len(choices))))
    found = {
        method: {c.name: values[:, i, j] for j, c in enumerate(choices)}
        for i, method in enumerate(methods)
    }
    cascades = {}
    for choice in choices:
        if choice.name != RANDOMIZATION:
            continue
        similarity = concat(partials, "similarity", empty=np.zeros((0, len(methods), 0)))
        first = concat(partials, "decorrelated_at", empty=np.zeros((0, len(methods))))
        depth = choice.parameters["depths"] or len(layers)
        for i, method in enumerate(methods):
            cascades[method] = Cascade(
                found[method][RANDOMIZATION],
                layers[:depth],
                similarity[:, i],
                first[:, i],
                choice.parameters["decorrelation_threshold"],
            )
    without = sum(int(p["without_mask"]) for p in partials)
    return DatasetScores(indices, found, tuple(int(i) for i in skipped), without, cascades)


def evaluate_dataset(
    model: LoadedModel,
    dataset: Dataset,
    plan: EvalPlan,
    indices: Sequence[int],
    *,
    classes: tuple[int, ...] | None,
    max_pixels: int,
    progress: Progress = no_progress,
) -> DatasetScores:
    """Every method and metric over `indices` in one pass (one slice, merged)."""
    partial = evaluate_slice(
        model, dataset, plan, indices, classes=classes, max_pixels=max_pixels, progress=progress
    )
    return merge_slices(plan, [partial], RandomizedCopies(model).layers)
