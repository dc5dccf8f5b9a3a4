"""An evaluation over a dataset, streamed in batches: every method on every metric for each
picture, then summarised (`summary`).

Pictures are drawn as the other dataset jobs draw them (`limit` of them with `seed`, sorted);
a picture that cannot be read is skipped and listed, one without a mask is counted and left
out of the localisation metrics only. `progress(done, total)` runs after each batch and may
raise `Cancelled` there. Runs on the device thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from model_registry.datasets import Dataset, match_classes
from model_registry.errors import ClientError, InvalidInput
from model_registry.registry import LoadedModel
from service.engine.evaluation.masks import dataset_masks
from service.engine.evaluation.plan import EvalPlan
from service.engine.evaluation.run import RandomizedCopies, Values, evaluate_batch, predicted
from service.engine.images import decode_image, preprocess
from service.engine.progress import Progress, no_progress

log = logging.getLogger("layerscope")

MAX_LIMIT = 5000  # pictures per dataset evaluation: 422 beyond
BATCH = 32  # pictures per batch: every method and metric runs on one batch at a time
PREDICTED, LABEL = "predicted", "label"
TARGETS = (PREDICTED, LABEL)


@dataclass(frozen=True)
class DatasetScores:
    """Per-picture values of every method and metric, for the pictures read."""

    indices: np.ndarray  # int64 [N], dataset indices
    values: Values  # method -> metric -> float64 [N]
    skipped: tuple[int, ...]
    without_mask: int  # pictures read that have no mask (0 when no metric needs one)


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


def evaluate_dataset(
    model: LoadedModel,
    dataset: Dataset,
    plan: EvalPlan,
    indices: tuple[int, ...],
    *,
    classes: tuple[int, ...] | None,
    max_pixels: int,
    progress: Progress = no_progress,
) -> DatasetScores:
    """Every method and metric over `indices`; target: the label's class (`classes` maps
    dataset classes to model outputs) or, when None, each picture's top-1 class."""
    copies = RandomizedCopies(model)
    kept: list[int] = []
    skipped: list[int] = []
    parts: dict[str, dict[str, list[np.ndarray]]] = {
        e.method: {c.name: [] for c in plan.metrics} for e in plan.explainers
    }
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
            found = evaluate_batch(
                model, batch, targets.to(model.device), plan, masks=masks, copies=copies, keys=read
            )
            for method, metrics in found.items():
                for metric, values in metrics.items():
                    parts[method][metric].append(values)
            kept.extend(read)
        progress(min(start + BATCH, total), total)
    if not kept:
        raise InvalidInput(f"dataset: none of the {total} pictures could be read", field="dataset")
    values = {
        method: {metric: np.concatenate(chunks) for metric, chunks in metrics.items()}
        for method, metrics in parts.items()
    }
    return DatasetScores(np.asarray(kept, dtype=np.int64), values, tuple(skipped), without)
