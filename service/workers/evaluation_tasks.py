"""Evaluation work for the device thread: a batch of pictures, or a dataset streamed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model_registry.datasets import Dataset, read_mask
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.target_objects import TargetRequest
from service.engine.evaluation.dataset_run import DatasetScores, evaluate_dataset
from service.engine.evaluation.masks import mask_at_input
from service.engine.evaluation.plan import MASK_SOURCES, EvalPlan
from service.engine.evaluation.run import Values, evaluate_batch, forward_fn
from service.engine.images import decode_image, preprocess
from service.engine.progress import Progress, no_progress

# Where a picture of a request came from: (dataset, index) for dataset:NAME/INDEX, or None.
Source = tuple[Dataset, int] | None


@dataclass(frozen=True)
class PictureScores:
    targets: np.ndarray  # int64 [B], the class explained in each picture
    values: Values


def evaluate_pictures_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: EvalPlan,
    request: TargetRequest,
    *,
    sources: Sequence[Source],
    max_pixels: int,
) -> PictureScores:
    """Every method and metric of `plan` for the pictures; masks from their datasets.

    Raises:
        InvalidInput: a localisation metric and a picture without a mask (naming it).
    """
    pictures = [decode_image(d, max_pixels=max_pixels, index=i) for i, d in enumerate(uploads)]
    batch = preprocess(pictures, model.spec, model.device)
    target = request.resolve(forward_fn(model)(batch), batch)
    classes = target.classes[:, 0]
    masks = None
    if plan.needs_masks:
        masks = []
        for index, (picture, source) in enumerate(zip(pictures, sources, strict=True)):
            data = None if source is None else read_mask(*source)
            mask = (
                None
                if data is None
                else mask_at_input(data, model.spec, size=picture.size, max_pixels=max_pixels)
            )
            if mask is None:
                raise InvalidInput(
                    f"image[{index}]: no object mask for this picture; {MASK_SOURCES}",
                    field="image",
                )
            masks.append(mask)
    values = evaluate_batch(model, batch, classes, plan, masks=masks)
    return PictureScores(classes.cpu().numpy().astype(np.int64), values)


def evaluate_dataset_task(
    model: LoadedModel,
    dataset: Dataset,
    plan: EvalPlan,
    indices: tuple[int, ...],
    *,
    classes: tuple[int, ...] | None,
    max_pixels: int,
    progress: Progress = no_progress,
) -> DatasetScores:
    """The plan over the dataset's `indices`, batch by batch."""
    return evaluate_dataset(
        model, dataset, plan, indices, classes=classes, max_pixels=max_pixels, progress=progress
    )
