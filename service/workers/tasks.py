"""Work the pool runs: decode on CPU, batched forward passes on the device, encode on CPU.

Attribution and insight work live in `attribution_tasks` and `insight_tasks`."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from model_registry.registry import LoadedModel
from model_registry.spec import ModelSpec
from service.engine import encode
from service.engine.capture import capture
from service.engine.feature_maps import (
    FeatureMapPlan,
    FeatureMaps,
    capture_calls,
    maps_from_outputs,
    render_feature_maps,
)
from service.engine.images import decode_image, display_pixels, model_pixels, to_batch
from service.engine.predict import Prediction, top_k_predictions
from service.engine.render import RenderOptions
from service.engine.upload_view import upload_view
from service.workers.answer import Answer
from service.workers.device_worker import BatchFn


def decode_tensor(model: LoadedModel, uploads: Sequence[bytes], *, max_pixels: int) -> torch.Tensor:
    """Uploads -> the model's normalized input batch on its device (run on the device thread)."""
    return to_batch(decode_batch(model, uploads, max_pixels=max_pixels), model.spec, model.device)


def decode_images(uploads: Sequence[bytes], *, max_pixels: int) -> list[Image.Image]:
    """Uploads -> decoded pictures, each checked against the pixel limit (Pillow only)."""
    return [decode_image(data, max_pixels=max_pixels, index=i) for i, data in enumerate(uploads)]


def decode_batch(model: LoadedModel, uploads: Sequence[bytes], *, max_pixels: int) -> np.ndarray:
    """Uploads -> uint8 [B, H, W, C] at the model's size; Pillow only, for the CPU pool."""
    return model_pixels(decode_images(uploads, max_pixels=max_pixels), model.spec)


def _split(batch: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Each request's part; copies when several share the batch, so a part kept (in the
    activation cache) never holds the other requests' memory."""
    return [batch] if len(sizes) == 1 else [part.clone() for part in batch.split(sizes)]


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
    """Select and reduce channels of captured outputs (numpy only: the CPU pool)."""
    return maps_from_outputs(model, outputs, plan, inputs=display_pixels(pixels))


def feature_maps_answer(
    model: LoadedModel,
    pixels: np.ndarray,
    outputs: dict[str, np.ndarray],
    plan: FeatureMapPlan,
    **encoding: Any,
) -> Answer[FeatureMaps]:
    """Select, reduce and encode captured outputs in one call of the CPU pool: a repeated
    view of a cached image then takes one hop from the event loop, not two."""
    return encode_feature_maps(feature_maps_from(model, pixels, outputs, plan), **encoding)


def encode_feature_maps(
    maps: FeatureMaps,
    *,
    fmt: str,
    options: RenderOptions,
    uploads: Sequence[bytes] = (),
    spec: ModelSpec | None = None,
    max_pixels: int = 0,
) -> Answer[FeatureMaps]:
    """png, npy or npz bytes of selected maps (numpy and Pillow only: runs in the CPU pool).

    Overlays on the upload's geometry (`options.canvas`) decode `uploads` again for it."""
    if fmt == "npy":
        if len(maps.layers) == 1:
            return Answer(maps, encode.npy_bytes(maps.layers[0].values), encode.NPY_MEDIA_TYPE)
        arrays = {layer.name: layer.values for layer in maps.layers}
        return Answer(maps, encode.npz_bytes(arrays), encode.NPZ_MEDIA_TYPE)
    views = []
    if options.overlay and options.canvas == "upload" and uploads and spec is not None:
        views = [
            upload_view(image, spec) for image in decode_images(uploads, max_pixels=max_pixels)
        ]
    picture = render_feature_maps(maps, options, views)
    return Answer(maps, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE)
