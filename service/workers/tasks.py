"""Work the pool runs: decode on CPU, batched forward passes on the device, encode on CPU."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.attribution.explain import (
    CamResult,
    GradientResult,
    compute_cam,
    compute_gradients,
)
from service.engine.attribution.pictures import Look, cam_panel, gradient_panel
from service.engine.attribution.plan import CamPlan, GradientPlan
from service.engine.capture import capture
from service.engine.feature_maps import (
    FeatureMapPlan,
    FeatureMaps,
    capture_calls,
    maps_from_outputs,
    render_feature_maps,
)
from service.engine.images import (
    decode_image,
    denormalize,
    display_pixels,
    model_pixels,
    preprocess,
    to_batch,
)
from service.engine.insight.draw import image_pixels, scatter
from service.engine.insight.draw import thumbnails as make_thumbnails
from service.engine.insight.embedding import EmbeddingPlan, extract_features, project
from service.engine.insight.filters import FilterPlan, get_filters, render_filters
from service.engine.insight.invert import InvertPlan, invert
from service.engine.insight.maximize import MaximizePlan, maximize
from service.engine.insight.progress import Progress, no_progress
from service.engine.insight.stats import compute_stats, render_stats
from service.engine.predict import Prediction, top_k_predictions
from service.engine.render import RenderOptions
from service.workers.device_worker import BatchFn


@dataclass(frozen=True)
class FeatureMapAnswer:
    """Encoded bytes for png/npy/npz (json carries the png) and the arrays behind them."""

    maps: FeatureMaps
    body: bytes
    media_type: str


def decode_tensor(model: LoadedModel, uploads: Sequence[bytes], *, max_pixels: int) -> torch.Tensor:
    """Uploads -> the model's normalized input batch on its device (run on the device thread)."""
    return to_batch(decode_batch(model, uploads, max_pixels=max_pixels), model.spec, model.device)


def decode_batch(model: LoadedModel, uploads: Sequence[bytes], *, max_pixels: int) -> np.ndarray:
    """Uploads -> uint8 [B, H, W, C] at the model's size; Pillow only, for the CPU pool."""
    images = [decode_image(data, max_pixels=max_pixels, index=i) for i, data in enumerate(uploads)]
    return model_pixels(images, model.spec)


def _split(batch: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    return list(batch.split(sizes))


def capture_work(model: LoadedModel, plan: FeatureMapPlan) -> tuple[Hashable, BatchFn]:
    """Batch key and batch function for capturing the plan's layers.

    Payloads are uint8 pixels [B, H, W, C]; results are per payload, layer -> float32 numpy
    outputs on the CPU (numpy, so nothing outside the device thread needs torch kernels).
    """
    calls = capture_calls(model, plan)

    def execute(payloads: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        batch = to_batch(np.concatenate(payloads), model.spec, model.device)
        sizes = [p.shape[0] for p in payloads]
        per_layer = {
            name: _split(out.detach().float().cpu(), sizes)
            for name, out in capture(model.module, batch, calls).items()
        }
        return [
            {name: parts[i].numpy() for name, parts in per_layer.items()}
            for i in range(len(payloads))
        ]

    return ("capture", model.name, tuple(sorted(calls.items()))), execute


def predict_work(model: LoadedModel) -> tuple[Hashable, BatchFn]:
    """Batch key and batch function for top-k predictions; payloads are (pixels, top_k)."""

    def execute(payloads: list[tuple[np.ndarray, int]]) -> list[list[list[Prediction]]]:
        pixels = np.concatenate([p for p, _ in payloads])
        with torch.inference_mode():
            batch = to_batch(pixels, model.spec, model.device)
            logits = model.module(batch).float().cpu()
        parts = _split(logits, [p.shape[0] for p, _ in payloads])
        return [
            top_k_predictions(part, model, k) for part, (_, k) in zip(parts, payloads, strict=True)
        ]

    return ("logits", model.name), execute


def feature_maps_from(
    model: LoadedModel, pixels: np.ndarray, outputs: dict[str, np.ndarray], plan: FeatureMapPlan
) -> FeatureMaps:
    """Select and reduce channels of captured outputs (torch: run it on the device thread)."""
    tensors = {name: torch.from_numpy(value) for name, value in outputs.items()}
    return maps_from_outputs(model, tensors, plan, inputs=display_pixels(pixels))


def encode_feature_maps(maps: FeatureMaps, *, fmt: str, options: RenderOptions) -> FeatureMapAnswer:
    if fmt == "npy":
        if len(maps.layers) == 1:
            return FeatureMapAnswer(
                maps, encode.npy_bytes(maps.layers[0].values), encode.NPY_MEDIA_TYPE
            )
        arrays = {layer.name: layer.values for layer in maps.layers}
        return FeatureMapAnswer(maps, encode.npz_bytes(arrays), encode.NPZ_MEDIA_TYPE)
    picture = render_feature_maps(maps, options)
    return FeatureMapAnswer(
        maps, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE
    )


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
) -> InsightAnswer:
    batch = decode_tensor(model, uploads, max_pixels=max_pixels)
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


@dataclass(frozen=True)
class CamAnswer:
    """Encoded bytes for png/npy/npz; for json the png plus the result for the metadata."""

    result: CamResult
    body: bytes
    media_type: str


@dataclass(frozen=True)
class GradientAnswer:
    result: GradientResult
    body: bytes
    media_type: str


def _per_request_shape(values: np.ndarray, several_targets: bool) -> np.ndarray:
    """[B, T, ...] -> [B, ...] when a single target (or the default top-1) was asked for."""
    return values if several_targets else values[:, 0]


def cam_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: CamPlan,
    *,
    fmt: str,
    look: Look,
    max_pixels: int,
) -> CamAnswer:
    batch = decode_tensor(model, uploads, max_pixels=max_pixels)
    result = compute_cam(model, batch, plan, inputs=denormalize(batch, model.spec))
    if fmt == "npy":
        several = result.several_targets
        arrays = {layer.name: _per_request_shape(layer.maps, several) for layer in result.layers}
        if len(arrays) == 1:
            (values,) = arrays.values()
            return CamAnswer(result, encode.npy_bytes(values), encode.NPY_MEDIA_TYPE)
        return CamAnswer(result, encode.npz_bytes(arrays), encode.NPZ_MEDIA_TYPE)
    picture = cam_panel(result, look, model.label)
    return CamAnswer(result, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE)


def gradients_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: GradientPlan,
    *,
    fmt: str,
    look: Look,
    max_pixels: int,
) -> GradientAnswer:
    batch = decode_tensor(model, uploads, max_pixels=max_pixels)
    result = compute_gradients(model, batch, plan, inputs=denormalize(batch, model.spec))
    if fmt == "npy":
        values = _per_request_shape(result.values, result.several_targets)
        return GradientAnswer(result, encode.npy_bytes(values), encode.NPY_MEDIA_TYPE)
    picture = gradient_panel(result, look, model.label)
    body = encode.png_bytes(np.ascontiguousarray(picture))
    return GradientAnswer(result, body, encode.PNG_MEDIA_TYPE)
