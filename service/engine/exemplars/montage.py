"""One unit's exemplars as a picture: its k pictures as the model sees them, each with the
receptive field of its strongest position drawn, and below each the field cropped out.

Layout (all tiles the same size, `GAP` pixels of white between and around them):
row 1 the k model inputs scaled to the tile with the box in `BOX_COLOUR`, row 2 each box's
crop scaled to fit the tile (aspect kept, centred on grey).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from model_registry.datasets import Dataset
from model_registry.spec import ModelSpec
from service.engine.dataset.pictures import read_picture
from service.engine.images import to_model_image

GAP = 4
MIN_TILE = 96  # small inputs (digits' 32 px) are scaled up to at least this side
MAX_TILE = 224
BOX_COLOUR = (255, 40, 40)
BACKGROUND = (128, 128, 128)


def tile_size(spec: ModelSpec) -> tuple[int, int]:
    """(height, width) of one tile: the input scaled by an integer (up) or down to fit."""
    height, width = spec.input_size
    side = max(height, width)
    if side < MIN_TILE:
        factor = -(-MIN_TILE // side)
        return height * factor, width * factor
    scale = min(1.0, MAX_TILE / side)
    return max(1, round(height * scale)), max(1, round(width * scale))


def montage_size(spec: ModelSpec, count: int) -> tuple[int, int]:
    """(height, width) of the montage of `count` exemplars."""
    tile_h, tile_w = tile_size(spec)
    return 2 * tile_h + 3 * GAP, count * tile_w + (count + 1) * GAP


def scaled_box(
    box: tuple[int, int, int, int], spec: ModelSpec, tile: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A [x0, y0, x1, y1) box of the model input in tile pixels (same convention)."""
    height, width = spec.input_size
    sy, sx = tile[0] / height, tile[1] / width
    x0, y0, x1, y1 = box
    return (
        int(np.floor(x0 * sx)),
        int(np.floor(y0 * sy)),
        int(np.ceil(x1 * sx)),
        int(np.ceil(y1 * sy)),
    )


def _crop(
    picture: Image.Image, box: tuple[int, int, int, int], tile: tuple[int, int]
) -> Image.Image:
    crop = picture.crop(box)
    scale = min(tile[0] / crop.height, tile[1] / crop.width)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    canvas = Image.new("RGB", (tile[1], tile[0]), BACKGROUND)
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR
    offset = ((tile[1] - size[0]) // 2, (tile[0] - size[1]) // 2)
    canvas.paste(crop.resize(size, resample), offset)
    return canvas


def montage(
    dataset: Dataset,
    spec: ModelSpec,
    indices: list[int],
    boxes: list[tuple[int, int, int, int]],
    *,
    max_pixels: int,
) -> np.ndarray:
    """uint8 RGB [H, W, 3]: the pictures `indices` with `boxes` (model-input pixels), and
    the boxes' crops. A picture that can no longer be read leaves its tiles grey."""
    tile = tile_size(spec)
    height, width = montage_size(spec, len(indices))
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    line = max(1, tile[0] // 64)
    for column, (index, box) in enumerate(zip(indices, boxes, strict=True)):
        left = GAP + column * (tile[1] + GAP)
        picture = read_picture(dataset, index, max_pixels)
        if picture is None:
            for top in (GAP, 2 * GAP + tile[0]):
                canvas.paste(Image.new("RGB", (tile[1], tile[0]), BACKGROUND), (left, top))
            continue
        seen = to_model_image(picture, spec)[0].convert("RGB")
        shown = seen.resize((tile[1], tile[0]), Image.Resampling.NEAREST)
        x0, y0, x1, y1 = scaled_box(box, spec, tile)
        ImageDraw.Draw(shown).rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=line)
        canvas.paste(shown, (left, GAP))
        canvas.paste(_crop(seen, box, tile), (left, 2 * GAP + tile[0]))
    return np.asarray(canvas)
