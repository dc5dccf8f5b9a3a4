"""Pictures from arrays: colormaps, tiles, grids, overlays and multi-layer panels.

Colormaps come from matplotlib's registry as lookup tables; no figure is ever built, which
is what makes a grid of channels cheap next to `plt.subplots` (`bench/feature_maps.py`).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import matplotlib
import numpy as np
from PIL import Image

from model_registry.errors import InvalidInput
from service.engine import text

SCALES = ("channel", "shared")
MIN_TILE = 64
_GAP = 2
_MARGIN = 8
_TITLE_HEIGHT = 18
_BACKGROUND = 255
_TITLE_COLOUR = (20, 20, 20)


@dataclass(frozen=True)
class RenderOptions:
    """How maps become pictures.

    Attributes:
        colormap: a matplotlib colormap name.
        scale: 'channel' (min-max per tile) or 'shared' (one min-max for the whole grid).
        columns: tiles per grid row; default ceil(sqrt(n)).
        upsample: tile size in pixels (longer side); default max(64, map size).
        overlay: blend each map onto the input picture.
        alpha: weight of the map in an overlay.
        labels: write the channel number on each tile.
        canvas: with overlay, 'upload' (the uploaded picture's geometry, through
            `service.engine.upload_view`) or 'input' (the model input).
    """

    colormap: str = "viridis"
    scale: str = "channel"
    columns: int | None = None
    upsample: int | None = None
    overlay: bool = False
    alpha: float = 0.5
    labels: bool = True
    canvas: str = "upload"


def colormap_names() -> list[str]:
    return sorted(matplotlib.colormaps)


def check_colormap(name: str, *, field: str = "colormap") -> None:
    if name not in matplotlib.colormaps:
        common = [
            "viridis",
            "magma",
            "inferno",
            "plasma",
            "cividis",
            "gray",
            "jet",
            "turbo",
            "RdBu_r",
            "coolwarm",
        ]
        raise InvalidInput(
            f"{field}: unknown colormap '{name}'; use a matplotlib colormap name such as "
            f"{', '.join(common)}",
            field=field,
            choices=colormap_names(),
        )


@lru_cache(maxsize=64)
def colormap_lut(name: str) -> np.ndarray:
    """[256, 3] uint8 lookup table of a matplotlib colormap."""
    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def unit_range(maps: np.ndarray, scale: str) -> np.ndarray:
    """Min-max to [0, 1] per map ([k, H, W], scale='channel') or across all maps ('shared')."""
    axes = (1, 2) if scale == "channel" else (0, 1, 2)
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0).astype(np.float32)


def tile_size(height: int, width: int, upsample: int | None) -> tuple[int, int]:
    longer = upsample or max(MIN_TILE, height, width)
    factor = longer / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def _bilinear_axis(length: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights along one axis, as torch's bilinear with
    align_corners=False (half-pixel centres, clamped at the edges)."""
    source = np.maximum((np.arange(size) + 0.5) * (length / size) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), length - 1)
    high = np.minimum(low + 1, length - 1)
    return low, high, (source - low).astype(np.float32)


def _nearest_index(length: int, size: int) -> np.ndarray:
    """Source index of each of `size` output pixels along an axis of `length` (nearest)."""
    return (np.arange(size) * length) // size


def _bilinear(stack: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize [k, C, H, W] float maps bilinearly, for overlays. numpy only: rendering runs in
    the CPU pool, where no torch kernel may run (see `service/workers/pool.py`)."""
    height, width = stack.shape[-2:]
    if (height, width) == size:
        return stack
    top, bottom, dy = _bilinear_axis(height, size[0])
    left, right, dx = _bilinear_axis(width, size[1])
    rows = stack[..., top, :] * (1 - dy)[:, None] + stack[..., bottom, :] * dy[:, None]
    return rows[..., left] * (1 - dx) + rows[..., right] * dx


def map_tiles(
    maps: np.ndarray, *, rgb: bool, background: np.ndarray | None, options: RenderOptions
) -> np.ndarray:
    """Maps [k, H, W] -> uint8 tiles [n, h, w, 3].

    `rgb=True` turns three maps (PCA components) into one colour tile; otherwise every map
    goes through the colormap. With `options.overlay`, tiles are blended onto `background`.
    """
    unit = unit_range(maps, "channel" if rgb else options.scale)
    height, width = maps.shape[1:]
    size = tile_size(height, width, options.upsample)
    if options.overlay:
        unit = _bilinear(unit[None] if rgb else unit[:, None], size)
        colour = _colour(unit, rgb=rgb, colormap=options.colormap)
    else:
        # Nearest neighbour (keeps pixels honest) copies values, so colouring at the map's own
        # size and then enlarging the uint8 colours gives the same tiles as enlarging first,
        # for a fraction of the work.
        small = _colour(unit[None] if rgb else unit[:, None], rgb=rgb, colormap=options.colormap)
        rows, cols = _nearest_index(height, size[0]), _nearest_index(width, size[1])
        colour = small.take(rows, axis=1).take(cols, axis=2)  # twice as fast as [rows, cols]
    if options.overlay and background is not None:
        base = np.asarray(
            Image.fromarray(background).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        )
        blend = options.alpha * colour.astype(np.float32) + (1 - options.alpha) * base[None].astype(
            np.float32
        )
        colour = np.clip(np.round(blend), 0, 255).astype(np.uint8)
    return colour


def _colour(unit: np.ndarray, *, rgb: bool, colormap: str) -> np.ndarray:
    """[k, C, h, w] values in [0, 1] -> uint8 colours [n, h, w, 3]: three components as RGB
    (`rgb`), else each map through the colormap's lookup table."""
    index = np.clip(np.round(unit * 255), 0, 255).astype(np.uint8)
    if rgb:
        return index.transpose(0, 2, 3, 1)
    return np.take(colormap_lut(colormap), index[:, 0], axis=0)


def grid(
    tiles: np.ndarray, *, columns: int | None = None, labels: list[str] | None = None
) -> np.ndarray:
    """Tiles [n, h, w, 3] -> one uint8 picture, row by row, optional label in each corner."""
    count, height, width = tiles.shape[:3]
    columns = max(1, min(columns or math.ceil(math.sqrt(count)), count))
    rows = math.ceil(count / columns)
    canvas = np.full(
        (rows * height + (rows - 1) * _GAP, columns * width + (columns - 1) * _GAP, 3),
        _BACKGROUND,
        np.uint8,
    )
    for i in range(count):
        top, left = (i // columns) * (height + _GAP), (i % columns) * (width + _GAP)
        canvas[top : top + height, left : left + width] = tiles[i]
    for i, label in enumerate((labels or [])[:count]):
        top, left = (i // columns) * (height + _GAP), (i % columns) * (width + _GAP)
        text.place(canvas, text.badge(label, 10), (top + 1, left + 2), darken=False)
    return canvas


def panel(rows: list[list[tuple[str, np.ndarray]]]) -> np.ndarray:
    """Rows of titled pictures, side by side with a title bar each, on one white canvas."""
    row_heights = [max(pic.shape[0] for _, pic in row) + _TITLE_HEIGHT for row in rows]
    row_widths = [sum(pic.shape[1] for _, pic in row) + _MARGIN * (len(row) + 1) for row in rows]
    height = sum(row_heights) + _MARGIN * (len(rows) + 1)
    canvas = np.full((height, max(row_widths), 3), _BACKGROUND, np.uint8)
    top = _MARGIN
    for row, row_height in zip(rows, row_heights, strict=True):
        left = _MARGIN
        for title, picture in row:
            text.place(canvas, text.ink(title, 12, _TITLE_COLOUR), (top + 2, left), darken=True)
            pic = picture if picture.ndim == 3 else np.repeat(picture[..., None], 3, axis=2)
            below = top + _TITLE_HEIGHT
            canvas[below : below + pic.shape[0], left : left + pic.shape[1]] = pic[..., :3]
            left += picture.shape[1] + _MARGIN
        top += row_height + _MARGIN
    return canvas


def input_picture(pixels: np.ndarray, *, longer_side: int) -> np.ndarray:
    """The de-normalized input, resized for display (nearest when enlarging small digits).

    Every view of an uploaded picture shows it at the same size, so the resized picture is
    kept (a few dozen, keyed by the pixels' digest) rather than resized again for every
    repeated PNG view. Callers get their own copy, since some draw on it."""
    pixels = np.ascontiguousarray(pixels)
    if max(pixels.shape[:2]) == longer_side:  # shown at its own size: nothing to resize or keep
        return pixels.copy()
    key = (hashlib.blake2b(pixels.data, digest_size=16).digest(), pixels.shape, longer_side)
    with _SHOWN_LOCK:
        shown = _SHOWN.get(key)
        if shown is not None:
            _SHOWN.move_to_end(key)
            return shown.copy()
    height, width = pixels.shape[:2]
    factor = longer_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    resample = Image.Resampling.NEAREST if factor >= 2 else Image.Resampling.BILINEAR
    shown = np.asarray(Image.fromarray(pixels).resize(size, resample))
    with _SHOWN_LOCK:
        _SHOWN[key] = shown
        while len(_SHOWN) > _SHOWN_MAX:
            _SHOWN.popitem(last=False)
    return shown.copy()


_SHOWN: OrderedDict[tuple, np.ndarray] = OrderedDict()
_SHOWN_LOCK = threading.Lock()
_SHOWN_MAX = 32
