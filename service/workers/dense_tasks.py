"""Device work for segmentation and detection predictions, and their CPU-side pictures."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.dense.outputs import Detection, detect, segment, shares
from service.engine.dense.pictures import boxes_picture, input_canvas, mask_picture, stack
from service.engine.images import display_pixels, to_batch
from service.engine.upload_view import UploadView, upload_view
from service.workers.device_worker import BatchFn
from service.workers.tasks import decode_images


def _sizes(payloads: list[np.ndarray]) -> list[int]:
    return [p.shape[0] for p in payloads]


def segment_work(model: LoadedModel) -> tuple[Hashable, BatchFn]:
    """Batch key and function: uint8 pixels [b, H, W, C] -> int64 class maps [b, H, W]."""

    def execute(payloads: list[np.ndarray]) -> list[np.ndarray]:
        batch = to_batch(np.concatenate(payloads), model.spec, model.device)
        maps = segment(model, batch)
        return np.split(maps, np.cumsum(_sizes(payloads))[:-1])

    return ("segment", model.name), execute


def detect_work(model: LoadedModel) -> tuple[Hashable, BatchFn]:
    """Batch key and function: uint8 pixels [b, H, W, C] -> detections per image."""

    def execute(payloads: list[np.ndarray]) -> list[list[list[Detection]]]:
        batch = to_batch(np.concatenate(payloads), model.spec, model.device)
        found = detect(model, batch)
        ends = np.cumsum(_sizes(payloads))
        return [found[end - size : end] for end, size in zip(ends, _sizes(payloads), strict=True)]

    return ("detect", model.name), execute


def prediction_views(
    model: LoadedModel,
    uploads: Sequence[bytes],
    pixels: np.ndarray,
    *,
    canvas: str,
    max_pixels: int,
) -> list[UploadView]:
    """What predictions are drawn on: each upload with its preprocessing's geometry
    (canvas 'upload', decoded again), or the model input (canvas 'input')."""
    if canvas == "input":
        return [input_canvas(picture) for picture in display_pixels(pixels)]
    images = decode_images(uploads, max_pixels=max_pixels)
    return [upload_view(image, model.spec) for image in images]


def mask_png(model: LoadedModel, views: list[UploadView], maps: np.ndarray) -> bytes:
    """Every image's class map blended over its view, with a legend (CPU pool)."""
    classes = model.spec.num_classes
    pictures = [
        mask_picture(view, class_map, shares(class_map, model), classes)
        for view, class_map in zip(views, maps, strict=True)
    ]
    return encode.png_bytes(stack(pictures))


def boxes_png(
    model: LoadedModel,
    views: list[UploadView],
    found: list[list[Detection]],
    input_size: tuple[int, int],
) -> bytes:
    """Every image's detections drawn on its view (CPU pool)."""
    classes = model.spec.num_classes
    pictures = [
        boxes_picture(view, dets, classes, input_size)
        for view, dets in zip(views, found, strict=True)
    ]
    return encode.png_bytes(stack(pictures))
