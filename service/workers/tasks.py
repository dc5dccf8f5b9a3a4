"""Tasks that run in the pool: decode -> engine -> encode, one function per endpoint."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.feature_maps import FeatureMapPlan, FeatureMaps, compute_feature_maps, render_feature_maps
from service.engine.images import decode_image, denormalize, preprocess
from service.engine.insight.draw import image_pixels, scatter
from service.engine.insight.draw import thumbnails as make_thumbnails
from service.engine.insight.embedding import EmbeddingPlan, extract_features, project
from service.engine.insight.filters import FilterPlan, get_filters, render_filters
from service.engine.insight.invert import InvertPlan, invert
from service.engine.insight.maximize import MaximizePlan, maximize
from service.engine.insight.progress import Progress, no_progress
from service.engine.insight.stats import compute_stats, render_stats
from service.engine.predict import Prediction, predict
from service.engine.render import RenderOptions


@dataclass(frozen=True)
class FeatureMapAnswer:
    """Encoded bytes for png/npy/npz; for json the png plus the arrays' metadata."""

    maps: FeatureMaps
    body: bytes
    media_type: str


def decode_batch(model: LoadedModel, uploads: Sequence[bytes], *, max_pixels: int) -> torch.Tensor:
    images = [decode_image(data, max_pixels=max_pixels, index=i) for i, data in enumerate(uploads)]
    return preprocess(images, model.spec, model.device)


def predict_job(model: LoadedModel, uploads: Sequence[bytes], *, top_k: int, max_pixels: int) -> list[list[Prediction]]:
    return predict(model, decode_batch(model, uploads, max_pixels=max_pixels), top_k)


def feature_maps_job(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: FeatureMapPlan,
    *,
    fmt: str,
    options: RenderOptions,
    max_pixels: int,
) -> FeatureMapAnswer:
    batch = decode_batch(model, uploads, max_pixels=max_pixels)
    maps = compute_feature_maps(model, batch, plan, inputs=denormalize(batch, model.spec))
    if fmt == "npy":
        if len(maps.layers) == 1:
            return FeatureMapAnswer(maps, encode.npy_bytes(maps.layers[0].values), encode.NPY_MEDIA_TYPE)
        arrays = {layer.name: layer.values for layer in maps.layers}
        return FeatureMapAnswer(maps, encode.npz_bytes(arrays), encode.NPZ_MEDIA_TYPE)
    picture = render_feature_maps(maps, options)
    return FeatureMapAnswer(maps, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE)


# Model insight (issue 5). Each task returns the engine's result with the encoded bytes of
# png/npy answers (for json, the png the answer embeds); routes build the JSON bodies.


@dataclass(frozen=True)
class InsightAnswer:
    """An engine result and its encoded picture or array."""

    result: Any
    body: bytes
    media_type: str


def _image_answer(result: Any, image: np.ndarray, fmt: str) -> InsightAnswer:
    """npy: float32 [C, H, W] in [0, 1]; png and json: the picture as PNG."""
    if fmt == "npy":
        return InsightAnswer(
            result, encode.npy_bytes(image.astype(np.float32)), encode.NPY_MEDIA_TYPE
        )
    return InsightAnswer(result, encode.png_bytes(image_pixels(image)), encode.PNG_MEDIA_TYPE)


def filters_task(
    model: LoadedModel, plan: FilterPlan, *, fmt: str, render: dict[str, Any]
) -> InsightAnswer:
    filters = get_filters(model, plan)
    if fmt == "npy":
        return InsightAnswer(filters, encode.npy_bytes(filters.weight), encode.NPY_MEDIA_TYPE)
    picture = render_filters(filters, plan, **render)
    return InsightAnswer(
        filters, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE
    )


def maximize_task(
    model: LoadedModel, plan: MaximizePlan, *, fmt: str, progress: Progress = no_progress
) -> InsightAnswer:
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
) -> InsightAnswer:
    batch = decode_batch(model, [upload], max_pixels=max_pixels)
    result = invert(model, batch, plan, progress=progress)
    return _image_answer(result, result.image, fmt)


def stats_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    layers: tuple[str, ...],
    *,
    fmt: str,
    max_pixels: int,
) -> InsightAnswer:
    batch = decode_batch(model, uploads, max_pixels=max_pixels)
    result = compute_stats(model, batch, layers)
    if fmt == "png":
        picture = render_stats(
            result, title=f"{model.name}: activations by depth over {len(uploads)} image(s)"
        )
        return InsightAnswer(result, encode.png_bytes(picture), encode.PNG_MEDIA_TYPE)
    return InsightAnswer(result, b"", "application/json")


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
) -> InsightAnswer:
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
        return InsightAnswer(result, encode.png_bytes(picture), encode.PNG_MEDIA_TYPE)
    return InsightAnswer(result, b"", "application/json")
