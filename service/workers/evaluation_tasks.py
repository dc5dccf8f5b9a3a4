"""Evaluation work for the device thread: a batch of pictures, or a dataset streamed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model_registry.datasets import Dataset, read_mask
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.target_objects import TargetRequest
from service.engine.evaluation.dataset_run import DatasetScores, evaluate_slice, merge_slices
from service.engine.evaluation.masks import mask_at_input, target_masks
from service.engine.evaluation.metrics import Cascade
from service.engine.evaluation.plan import MASK_SOURCES, EvalPlan
from service.engine.evaluation.run import (
    RandomizedCopies,
    Values,
    evaluate_batch,
    resolve_target,
)
from service.engine.evaluation.summary import Summary, summarise
from service.engine.images import decode_image, preprocess
from service.engine.partials import Partial
from service.engine.progress import Progress, no_progress

# Where a picture of a request came from: (dataset, index) for dataset:NAME/INDEX, or None.
Source = tuple[Dataset, int] | None


@dataclass(frozen=True)
class PictureScores:
    targets: np.ndarray  # int64 [B], the class explained in each picture
    values: Values
    cascades: dict[str, Cascade]  # randomization's per-depth detail, per method


def evaluate_pictures_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: EvalPlan,
    request: TargetRequest,
    *,
    sources: Sequence[Source],
    max_pixels: int,
) -> PictureScores:
    """Every method and metric of `plan` for the pictures and the target `request` resolves
    to (one per picture); masks from their datasets, else the target's region or box.

    Raises:
        InvalidInput: a localisation metric and a picture without a mask (naming it).
    """
    pictures = [decode_image(d, max_pixels=max_pixels, index=i) for i, d in enumerate(uploads)]
    batch = preprocess(pictures, model.spec, model.device)
    target = resolve_target(model, request, batch)
    classes = target.classes[:, 0]
    masks = None
    if plan.needs_masks:
        masks = []
        own = target_masks(target, (batch.shape[-2], batch.shape[-1]))
        for index, (picture, source) in enumerate(zip(pictures, sources, strict=True)):
            data = None if source is None else read_mask(*source)
            mask = (
                None
                if data is None
                else mask_at_input(data, model.spec, size=picture.size, max_pixels=max_pixels)
            )
            if mask is None and own is not None:
                mask = own[index]
            if mask is None:
                raise InvalidInput(
                    f"image[{index}]: no object mask for this picture; {MASK_SOURCES}",
                    field="image",
                )
            masks.append(mask)
    found = evaluate_batch(model, batch, target, plan, masks=masks)
    return PictureScores(classes.cpu().numpy().astype(np.int64), found.values, found.cascades)


def evaluate_slice_task(
    model: LoadedModel,
    dataset: Dataset,
    plan: EvalPlan,
    indices: Sequence[int],
    *,
    classes: tuple[int, ...] | None,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """One slice of the plan's pictures, batch by batch (a job's shard: progress may
    cancel): per-picture values and counts as a partial."""
    return evaluate_slice(
        model, dataset, plan, indices, classes=classes, max_pixels=max_pixels, progress=progress
    )


def evaluate_merge_task(
    model: LoadedModel, plan: EvalPlan, partials: Sequence[Partial]
) -> tuple[DatasetScores, Summary]:
    """Every slice's partial, in slice order, joined and summarised: mean, std, bootstrap
    interval (seeded by the plan's seed) and rankings.

    Raises:
        InvalidInput: no slice read any picture.
    """
    scores = merge_slices(plan, partials, RandomizedCopies(model).layers)
    better = {c.name: c.metric.higher_is_better for c in plan.metrics}
    return scores, summarise(scores.values, scores.indices, better, seed=plan.seed)
