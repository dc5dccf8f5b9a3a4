"""Object masks for the localisation metrics, brought to the model input geometry.

A mask is a picture whose non-zero pixels are the object: a PNG of a dataset's `masks`
folder, or, for the built-in digits, the digit's own picture (its strokes). It goes through
the model's own resize, crop or letterbox (`images.to_model_image`, one channel, the
letterbox padding counted as background), so mask pixel (y, x) is input pixel (y, x).

A segmentation or detection request has its own: the target's region, or its box filled
(`target_masks`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image

from model_registry.datasets import Dataset, read_mask
from model_registry.errors import ClientError
from model_registry.spec import ModelSpec
from service.engine.attribution.target_objects import Target
from service.engine.images import decode_image, to_model_image

log = logging.getLogger("layerscope")


def _mask_spec(spec: ModelSpec) -> ModelSpec:
    """The model's geometry for a one-channel 0/255 picture with a black letterbox."""
    return dataclasses.replace(spec, mean=(0.0,), std=(1.0,))


def mask_at_input(
    data: bytes, spec: ModelSpec, *, size: tuple[int, int], max_pixels: int
) -> np.ndarray | None:
    """bool [H, W] at the model input, or None where the data is no decodable picture or
    its (width, height) is not the picture's `size`."""
    try:
        picture = decode_image(data, max_pixels=max_pixels, field="mask")
    except ClientError:
        return None
    if picture.size != size:
        return None
    values = np.asarray(picture.convert("RGBA" if "A" in picture.getbands() else "RGB"))
    colour = values[..., :3].max(axis=2) if values.ndim == 3 else values
    binary = Image.fromarray(np.where(colour > 0, 255, 0).astype(np.uint8), mode="L")
    fitted, _ = to_model_image(binary, _mask_spec(spec))
    return np.asarray(fitted, dtype=np.uint8) >= 128


def dataset_masks(
    dataset: Dataset,
    indices: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    spec: ModelSpec,
    *,
    max_pixels: int,
) -> list[np.ndarray | None]:
    """The mask of each picture (of (width, height) `sizes`), or None where its file is
    missing, does not decode or has another size."""
    found: list[np.ndarray | None] = []
    for index, size in zip(indices, sizes, strict=True):
        data = read_mask(dataset, index)
        mask = None
        if data is not None:
            mask = mask_at_input(data, spec, size=size, max_pixels=max_pixels)
            if mask is None:
                log.warning(
                    "dataset %s: no usable mask for %s", dataset.name, dataset.describe(index)
                )
        found.append(mask)
    return found


def target_masks(target: Target, size: tuple[int, int]) -> list[np.ndarray] | None:
    """bool [H, W] per image at the input size `size` (H, W) from its first target: a
    region's pixels (`RegionTarget`), or a box (`BoxTarget`) filled over every pixel it
    touches, rounded outwards as `region=x0,y0,x1,y1` is; None for a class target."""
    regions, boxes = target.regions_drawn(), target.boxes_drawn()
    if regions is not None:
        return list(regions[:, 0].cpu().numpy().astype(bool))
    if boxes is None:
        return None
    height, width = size
    found = []
    for x0, y0, x1, y1 in boxes[:, 0].detach().float().cpu().tolist():
        mask = np.zeros(size, dtype=bool)
        left, top = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        mask[top : min(height, int(np.ceil(y1))), left : min(width, int(np.ceil(x1)))] = True
        found.append(mask)
    return found
