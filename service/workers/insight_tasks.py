"""Model insight work for the device thread: filters, maximization, inversion, statistics and
embeddings. Each task returns the engine's result with the encoded bytes of png/npy answers
(for json, the png the answer embeds)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.images import decode_image, denormalize, preprocess
from service.engine.insight.draw import image_pixels, scatter
from service.engine.insight.draw import thumbnails as make_thumbnails
from service.engine.insight.embedding import EmbeddingPlan, extract_features, project
from service.engine.insight.filters import FilterPlan, get_filters, render_filters
from service.engine.insight.invert import InvertPlan, invert
from service.engine.insight.maximize import MaximizePlan, maximize
from service.engine.insight.stats import compute_stats, render_stats
from service.engine.progress import Progress, no_progress
from service.workers.answer import Answer
from service.workers.tasks import decode_tensor


def _image_answer(result: Any, image: np.ndarray, fmt: str) -> Answer[Any]:
    """npy: float32 [C, H, W] in [0, 1]; png and json: the picture as PNG."""
    if fmt == "npy":
        return Answer(result, encode.npy_bytes(image.astype(np.float32)), encode.NPY_MEDIA_TYPE)
    return Answer(result, encode.png_bytes(image_pixels(image)), encode.PNG_MEDIA_TYPE)


def filters_task(
    model: LoadedModel, plan: FilterPlan, *, fmt: str, render: dict[str, Any]
) -> Answer[Any]:
    filters = get_filters(model, plan)
    if fmt == "npy":
        return Answer(filters, encode.npy_bytes(filters.weight), encode.NPY_MEDIA_TYPE)
    picture = render_filters(filters, plan, **render)
    return Answer(filters, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE)


def maximize_task(
    model: LoadedModel, plan: MaximizePlan, *, fmt: str, progress: Progress = no_progress
) -> Answer[Any]:
    result = maximize(model, plan, progress=progress)
    return _image_answer(result, result.image, fmt)


def invert_task(
    model: LoadedModel,
    upload: bytes,
    plan: InvertPlan,
    *,
    fmt: str,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Answer[Any]:
    batch = decode_tensor(model, [upload], max_pixels=max_pixels)
    result = invert(model, batch, plan, progress=progress)
    return _image_answer(result, result.image, fmt)


def stats_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    layers: tuple[str, ...],
    *,
    fmt: str,
    max_pixels: int,
) -> Answer[Any]:
    batch = decode_tensor(model, uploads, max_pixels=max_pixels)
    result = compute_stats(model, batch, layers)
    if fmt == "png":
        picture = render_stats(
            result, title=f"{model.name}: activations by depth over {len(uploads)} image(s)"
        )
        return Answer(result, encode.png_bytes(picture), encode.PNG_MEDIA_TYPE)
    return Answer(result, b"", "application/json")


EMBEDDING_CHUNK = 64
THUMBNAIL_SIDE = 20


def embedding_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: EmbeddingPlan,
    *,
    fmt: str,
    labels: list[str] | None,
    thumbnails: bool,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Answer[Any]:
    """Decode and forward in chunks (memory stays flat for thousands of images), then project."""
    chunks = [uploads[i : i + EMBEDDING_CHUNK] for i in range(0, len(uploads), EMBEDDING_CHUNK)]
    total = len(chunks) + 1
    thumbs: list[np.ndarray] = []
    done = [0]

    def batches() -> Iterator[torch.Tensor]:
        for number, chunk in enumerate(chunks):
            images = [
                decode_image(data, max_pixels=max_pixels, index=number * EMBEDDING_CHUNK + i)
                for i, data in enumerate(chunk)
            ]
            batch = preprocess(images, model.spec, model.device)
            if thumbnails and fmt == "png":
                thumbs.append(make_thumbnails(denormalize(batch, model.spec), THUMBNAIL_SIDE))
            yield batch

    def after_batch() -> None:
        done[0] += 1
        progress(done[0], total)

    features = extract_features(model, batches(), plan, after_batch=after_batch)
    result = project(features, plan)
    progress(total, total)
    if fmt == "png":
        title = f"{model.name}: {plan.method} of {len(uploads)} images at {plan.describe()}"
        picture = scatter(
            result.points,
            labels,
            title=title,
            thumbnails=np.concatenate(thumbs) if thumbs else None,
        )
        return Answer(result, encode.png_bytes(picture), encode.PNG_MEDIA_TYPE)
    return Answer(result, b"", "application/json")
