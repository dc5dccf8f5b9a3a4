"""Concept work for the device thread: DFF of a request's pictures or of a slice of a
dataset's, and TCAV."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_registry.datasets import Dataset
from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.concepts.dataset import concepts_slice
from service.engine.concepts.factorize import (
    ConceptPlan,
    ConceptResult,
    compute_concepts,
    top_classes,
)
from service.engine.concepts.picture import concepts_picture, legend_lines
from service.engine.concepts.tcav import TcavPlan, TcavResult, run_tcav
from service.engine.images import model_pixels, to_batch
from service.engine.partials import Partial
from service.engine.progress import Progress, no_progress
from service.engine.upload_view import upload_view
from service.workers.answer import Answer
from service.workers.tasks import decode_images


def concepts_task(
    model: LoadedModel, uploads: Sequence[bytes], plan: ConceptPlan, *, fmt: str, max_pixels: int
) -> Answer[ConceptResult]:
    """DFF of the uploads: npy heatmaps [B, K, H, W], or the png (json embeds it)."""
    images = decode_images(uploads, max_pixels=max_pixels)
    batch = to_batch(model_pixels(images, model.spec), model.spec, model.device)
    result = compute_concepts(model, batch, plan)
    if fmt == "npy":
        return Answer(result, encode.npy_bytes(result.heatmaps), encode.NPY_MEDIA_TYPE)
    tops = None if result.scores is None else top_classes(result.scores, plan.top)
    lines = legend_lines(tops, plan.k, model.label)
    views = [upload_view(image, model.spec) for image in images]
    picture = np.ascontiguousarray(concepts_picture(views, result.heatmaps, lines))
    return Answer(result, encode.png_bytes(picture), encode.PNG_MEDIA_TYPE)


def tcav_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: TcavPlan,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> TcavResult:
    """TCAV of the uploads (inputs of the target class) for the plan's concepts."""
    images = decode_images(uploads, max_pixels=max_pixels)
    batch = to_batch(model_pixels(images, model.spec), model.spec, model.device)
    return run_tcav(model, batch, plan, max_pixels=max_pixels, progress=progress)


def concepts_slice_task(
    model: LoadedModel,
    dataset: Dataset,
    plan: ConceptPlan,
    indices: Sequence[int],
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """The maps of the dataset's pictures `indices`, a slice of a DFF job's: its partial."""
    return concepts_slice(model, dataset, plan, indices, max_pixels=max_pixels, progress=progress)
