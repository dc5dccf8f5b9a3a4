"""Device work for segmentation and detection predictions, and their CPU-side pictures."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.dense.outputs import Detection, detect, segment, shares
from service.engine.dense.pictures import boxes_picture, mask_picture, stack
from service.engine.images import display_pixels, to_batch
from service.workers.device_worker import BatchFn


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


def mask_png(model: LoadedModel, pixels: np.ndarray, maps: np.ndarray) -> bytes:
    """Every image's class map blended over it, with a legend (CPU pool: numpy and Pillow)."""
    shown = display_pixels(pixels)
    classes = model.spec.num_classes
    pictures = [
        mask_picture(image, class_map, shares(class_map, model), classes)
        for image, class_map in zip(shown, maps, strict=True)
    ]
    return encode.png_bytes(stack(pictures))


def boxes_png(model: LoadedModel, pixels: np.ndarray, found: list[list[Detection]]) -> bytes:
    shown = display_pixels(pixels)
    classes = model.spec.num_classes
    pictures = [boxes_picture(img, dets, classes) for img, dets in zip(shown, found, strict=True)]
    return encode.png_bytes(stack(pictures))
