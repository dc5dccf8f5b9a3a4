"""Channel contributions over a dataset: a class x channel matrix.

Row k is the mean, over the pictures labelled k, of each channel's contribution
(`contributions`) to the model's score of class k: each picture explains its own label.
Pictures are streamed in batches and only the running sums per class are kept. A job split
into slices (issue 31) runs `contribution_slice` per slice and `merge_contributions` once,
which adds the slices' sums and counts. Runs on the device thread; `progress` may cancel
between batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model_registry.datasets import Dataset, match_classes
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.contributions import (
    ContributionPlan,
    channel_contributions,
    plan_contributions,
)
from service.engine.attribution.target_objects import ClassTarget
from service.engine.dataset.pictures import picture_batches, sample_indices
from service.engine.images import preprocess
from service.engine.partials import Partial, concat, total
from service.engine.progress import Progress, no_progress, reporting

BATCH_VALUES = 256 * 32 * 32  # model-input values per batch: 256 digits, 5 pictures at 224 px


@dataclass(frozen=True)
class DatasetContributionPlan:
    """A validated dataset contributions job.

    Attributes:
        dataset: its name; `classes` its class names.
        contribution: the per-picture plan (layer, method, steps, baseline, top).
        indices: the dataset indices, ascending: all, or `limit` drawn with `seed`.
        class_map: the model's output index of each dataset class.
        batch_size: pictures per pass.
    """

    dataset: str
    classes: tuple[str, ...]
    contribution: ContributionPlan
    indices: tuple[int, ...]
    class_map: tuple[int, ...]
    batch_size: int


@dataclass(frozen=True)
class ClassChannelMatrix:
    """matrix float64 [classes, C] (NaN for a class without pictures); counts int64
    [classes]; indices: the pictures used (unreadable ones left out)."""

    matrix: np.ndarray
    counts: np.ndarray
    indices: np.ndarray


def plan_dataset_contributions(
    model: LoadedModel,
    dataset: Dataset,
    *,
    layer: str | None,
    method: str,
    steps: int,
    baseline: str,
    top: int,
    limit: int | None = None,
    seed: int = 0,
) -> DatasetContributionPlan:
    """Check the job before any compute: a classifier whose labels match the dataset's
    classes (each picture explains its label's class), a layer with channels."""
    if model.spec.task != "classification":
        raise InvalidInput(
            f"model: '{model.name}' is a {model.spec.task} model without a classifier; the "
            "matrix explains each picture's class label through the model's class scores, "
            "so it needs a classification model",
            field="model",
        )
    labels = [model.label(i) for i in range(model.spec.num_classes)]
    class_map = match_classes(dataset.classes, labels)
    if class_map is None:
        raise InvalidInput(
            f"dataset: the classes of '{dataset.name}' ({', '.join(dataset.classes[:10])}...) "
            f"are not all labels of model '{model.name}', so a picture's label names no "
            "class score to explain",
            field="dataset",
            classes=list(dataset.classes[:50]),
        )
    contribution = plan_contributions(
        model, layer=layer, method=method, steps=steps, baseline=baseline, top=top
    )
    size = len(dataset)
    count = size if limit is None else min(limit, size)
    indices = sample_indices(size, count, seed)
    height, width = model.spec.input_size
    batch = max(1, BATCH_VALUES // (model.spec.in_channels * height * width))
    return DatasetContributionPlan(
        dataset=dataset.name,
        classes=tuple(dataset.classes),
        contribution=contribution,
        indices=indices,
        class_map=class_map,
        batch_size=batch,
    )


def dataset_contributions(
    model: LoadedModel,
    dataset: Dataset,
    plan: DatasetContributionPlan,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> ClassChannelMatrix:
    """The class x channel matrix of the plan's pictures in one pass (one slice of them all,
    merged); `progress(done, total)` counts pictures after each batch (and repeats the count
    after each conductance pass)."""
    part = contribution_slice(
        model, dataset, plan, plan.indices, max_pixels=max_pixels, progress=progress
    )
    return merge_contributions([part])


def contribution_slice(
    model: LoadedModel,
    dataset: Dataset,
    plan: DatasetContributionPlan,
    indices: Sequence[int],
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """One slice of the plan's pictures to a partial: `sums` float64 [classes, C] and
    `counts` int64 [classes] per label, `kept` int64 the pictures read, `skipped` how many
    could not be (logged and counted, never an error). `progress(done, len(indices))`."""
    channels = plan.contribution.layout.channels
    sums = np.zeros((len(plan.classes), channels), dtype=np.float64)
    counts = np.zeros(len(plan.classes), dtype=np.int64)
    kept: list[int] = []
    outputs = torch.tensor(plan.class_map, dtype=torch.long)
    size = len(indices)
    for part in picture_batches(dataset, indices, plan.batch_size, max_pixels):
        if part.images:
            kept.extend(part.indices)
            batch = preprocess(part.images, model.spec, model.device)
            which = torch.tensor([dataset.label(i) for i in part.indices], dtype=torch.long)
            target = ClassTarget(outputs[which][:, None].to(model.device))
            # conductance reports each pass: the job may cancel or time out inside a batch
            with reporting(lambda _pass, _passes, done=part.start: progress(done, size)):
                _, values = channel_contributions(
                    model, batch, plan.contribution, fixed_targets=target
                )
            np.add.at(sums, which.numpy(), values[:, 0].double().cpu().numpy())
            np.add.at(counts, which.numpy(), 1)
        progress(part.end, size)
    return {
        "sums": sums,
        "counts": counts,
        "kept": np.asarray(kept, dtype=np.int64),
        "skipped": np.asarray(size - len(kept), dtype=np.int64),
    }


def merge_contributions(partials: Sequence[Partial]) -> ClassChannelMatrix:
    """The slices' partials (in slice order) to the matrix: sums and counts added, each row
    divided by its count (NaN for a class no slice saw)."""
    sums, counts = total(partials, "sums"), total(partials, "counts")
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = sums / counts[:, None]
    kept = concat(partials, "kept", empty=np.zeros(0, dtype=np.int64))
    return ClassChannelMatrix(matrix, counts.astype(np.int64), kept.astype(np.int64))
