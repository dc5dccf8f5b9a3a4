"""Maps drawn back on the uploaded picture's own geometry, not on the model's input square.

A map covers the model input, which is `Geometry.box` of the upload: the whole picture
(squash), its centre (crop) or a padded region around it (letterbox). `UploadView.place`
samples a map at every pixel of the upload shown at display size; pixels the model never
saw (outside a crop) are marked so pictures can dim them. numpy and Pillow only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from model_registry.spec import ModelSpec
from service.engine.images import Geometry, fit_geometry, in_mode
from service.engine.render import (
    MIN_TILE,
    RenderOptions,
    colormap_lut,
    input_picture,
    tile_size,
    unit_range,
)

MAX_DISPLAY = 320
MIN_DISPLAY = 128
OUTSIDE_FADE = 0.55  # how far pixels the model never saw (outside a crop) fade to white


def display_side(height: int, width: int) -> int:
    """The longer side pictures are drawn at: the upload's own, within [128, 320]."""
    return min(MAX_DISPLAY, max(MIN_DISPLAY, height, width))


def _axis(count: int, source: float, start: float, end: float, cells: int) -> np.ndarray:
    """Map-cell coordinates (cell centres at 0, 1, ...) of `count` display pixel centres."""
    upload = (np.arange(count) + 0.5) * (source / count)
    return (upload - start) / (end - start) * cells - 0.5


def _inside(count: int, source: float, start: float, end: float) -> np.ndarray:
    upload = (np.arange(count) + 0.5) * (source / count)
    return (upload >= start) & (upload <= end)


def _sample(values: np.ndarray, coords: np.ndarray, axis: int, nearest: bool) -> np.ndarray:
    """Values along `axis` at fractional cell coordinates, clamped at the edges."""
    cells = values.shape[axis]
    if nearest:
        index = np.clip(np.floor(coords + 0.5), 0, cells - 1).astype(np.int64)
        return np.take(values, index, axis=axis)
    clamped = np.clip(coords, 0, cells - 1)
    low = np.floor(clamped).astype(np.int64)
    high = np.minimum(low + 1, cells - 1)
    shape = [1] * values.ndim
    shape[axis] = coords.size
    weight = (clamped - low).astype(np.float32).reshape(shape)
    below, above = np.take(values, low, axis=axis), np.take(values, high, axis=axis)
    return below * (1 - weight) + above * weight


@dataclass(frozen=True)
class UploadView:
    """The upload at display size and how the model input sits on it.

    Attributes:
        picture: uint8 RGB [h, w, 3], the uploaded picture at display size.
        geometry: what preprocessing did to the upload (`service.engine.images.Geometry`).
    """

    picture: np.ndarray
    geometry: Geometry

    @property
    def inside(self) -> np.ndarray:
        """bool [h, w]: display pixels the model saw (all but the outside of a crop)."""
        height, width = self.picture.shape[:2]
        source_h, source_w = self.geometry.source_size
        x0, y0, x1, y1 = self.geometry.box
        return _inside(height, source_h, y0, y1)[:, None] & _inside(width, source_w, x0, x1)[None]

    def place(self, values: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """A map [..., H, W] over the model input -> float32 [..., h, w] over the picture.

        Bilinear between cell centres (as torch's align_corners=False), or nearest cells;
        pixels outside the model's view take the closest edge cell (see `inside`).
        """
        height, width = self.picture.shape[:2]
        source_h, source_w = self.geometry.source_size
        x0, y0, x1, y1 = self.geometry.box
        rows = _axis(height, source_h, y0, y1, values.shape[-2])
        cols = _axis(width, source_w, x0, x1, values.shape[-1])
        placed = _sample(values.astype(np.float32), rows, values.ndim - 2, nearest)
        return _sample(placed, cols, values.ndim - 1, nearest).astype(np.float32)

    def box_on_picture(self, box: Sequence[float], input_size: tuple[int, int]) -> list[float]:
        """A box [x0, y0, x1, y1] in model-input pixels (input_size: height, width) -> the same
        box in the view's picture pixels."""
        height, width = self.picture.shape[:2]
        source_h, source_w = self.geometry.source_size
        left, top, right, bottom = self.geometry.box
        sx, sy = (right - left) / input_size[1], (bottom - top) / input_size[0]
        x0, y0, x1, y1 = (float(v) for v in box)
        return [
            (left + x0 * sx) * width / source_w,
            (top + y0 * sy) * height / source_h,
            (left + x1 * sx) * width / source_w,
            (top + y1 * sy) * height / source_h,
        ]

    def faded(self, picture: np.ndarray) -> np.ndarray:
        """`picture` (drawn on this view) with what the model never saw faded toward white."""
        inside = self.inside
        if inside.all():
            return picture
        faded = picture.astype(np.float32)
        faded[~inside] += (255.0 - faded[~inside]) * OUTSIDE_FADE
        return np.round(faded).astype(np.uint8)

    def resized(self, size: tuple[int, int]) -> UploadView:
        """The same view drawn at `size` (height, width)."""
        if self.picture.shape[:2] == size:
            return self
        image = Image.fromarray(self.picture).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return UploadView(np.asarray(image), self.geometry)

    def magnification(self, map_shape: tuple[int, int]) -> float:
        """Display pixels per map cell (>= 2: small inputs such as digits look best nearest)."""
        height, width = self.picture.shape[:2]
        x0, y0, x1, y1 = self.geometry.box
        source_h, source_w = self.geometry.source_size
        return min(
            (y1 - y0) * height / source_h / map_shape[0],
            (x1 - x0) * width / source_w / map_shape[1],
        )


def input_view(pixels: np.ndarray) -> UploadView:
    """The model input itself (uint8 [H, W, 3]) as the picture maps are drawn on."""
    height, width = pixels.shape[:2]
    picture = input_picture(pixels, longer_side=display_side(height, width))
    box = (0.0, 0.0, float(width), float(height))
    return UploadView(picture, Geometry("squash", (height, width), box))


def upload_view(image: Image.Image, spec: ModelSpec) -> UploadView:
    """The decoded upload as it is drawn under maps, with the geometry of its preprocessing."""
    pixels = np.asarray(in_mode(image, "RGB"))
    picture = input_picture(pixels, longer_side=display_side(image.height, image.width))
    return UploadView(picture, fit_geometry((image.height, image.width), spec))


def overlay_tiles(
    maps: np.ndarray, view: UploadView, *, rgb: bool, options: RenderOptions
) -> np.ndarray:
    """Maps [k, H, W] blended onto the upload at tile size: uint8 tiles [n, h, w, 3] with
    the upload's aspect (`render.map_tiles` draws them on the model input instead)."""
    source_h, source_w = view.geometry.source_size
    longer = options.upsample or max(MIN_TILE, *maps.shape[1:])
    tile = view.resized(tile_size(source_h, source_w, longer))
    unit = tile.place(unit_range(maps, "channel" if rgb else options.scale))
    if rgb:
        colour = np.clip(np.round(unit.transpose(1, 2, 0)[None] * 255), 0, 255).astype(np.uint8)
    else:
        colour = colormap_lut(options.colormap)[
            np.clip(np.round(unit * 255), 0, 255).astype(np.uint8)
        ]
    blend = options.alpha * colour.astype(np.float32) + (1 - options.alpha) * tile.picture
    return np.stack([tile.faded(np.clip(np.round(b), 0, 255).astype(np.uint8)) for b in blend])
