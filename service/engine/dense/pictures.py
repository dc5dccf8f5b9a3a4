"""Pictures of segmentation masks (blended, with a legend) and of detection boxes.

Both are drawn on an `UploadView`: the uploaded picture with the geometry of its
preprocessing (the mask sampled onto it, boxes mapped onto it, what a crop left out faded),
or the model input itself (`input_canvas`).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np

from service.engine import text
from service.engine.dense.outputs import ClassShare, Detection
from service.engine.images import Geometry
from service.engine.render import input_picture
from service.engine.upload_view import UploadView

MIN_SIDE = 256
LEGEND_WIDTH = 170
_ROW = 16
_WHITE = (255, 255, 255)


def palette(count: int) -> np.ndarray:
    """uint8 [count, 3]: well separated hues (golden-ratio steps); class 0 is dark grey."""
    colours = [
        colorsys.hsv_to_rgb((0.61803398875 * i) % 1.0, 0.75, 0.95) for i in range(max(count, 1))
    ]
    table = np.round(np.asarray(colours) * 255).astype(np.uint8)
    table[0] = (60, 60, 60)
    return table


def input_canvas(pixels: np.ndarray) -> UploadView:
    """The model input (uint8 [H, W, 3]) as the canvas, its longer side at least MIN_SIDE."""
    height, width = pixels.shape[:2]
    picture = input_picture(pixels, longer_side=max(MIN_SIDE, height, width))
    return UploadView(picture, Geometry("squash", (height, width), (0.0, 0.0, width, height)))


def legible(view: UploadView) -> UploadView:
    """The view enlarged so its longer side is at least MIN_SIDE (badges and legend text)."""
    height, width = view.picture.shape[:2]
    if max(height, width) >= MIN_SIDE:
        return view
    factor = MIN_SIDE / max(height, width)
    return view.resized((max(1, round(height * factor)), max(1, round(width * factor))))


def outline(picture: np.ndarray, box: Sequence[float], colour: Sequence[int], width: int = 2):
    """Draw a rectangle (x0, y0, x1, y1 in `picture` pixels) in place, clipped."""
    height, full = picture.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = max(0, min(x0, full - 1)), max(0, min(x1, full - 1))
    y0, y1 = max(0, min(y0, height - 1)), max(0, min(y1, height - 1))
    picture[y0 : y0 + width, x0 : x1 + 1] = colour
    picture[max(y1 - width + 1, 0) : y1 + 1, x0 : x1 + 1] = colour
    picture[y0 : y1 + 1, x0 : x0 + width] = colour
    picture[y0 : y1 + 1, max(x1 - width + 1, 0) : x1 + 1] = colour


def region_outline(picture: np.ndarray, mask: np.ndarray, colour: Sequence[int]) -> None:
    """Mark the border pixels of a boolean mask (at `picture`'s size) in place."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    picture[mask & ~inner] = colour


def mask_picture(
    view: UploadView, class_map: np.ndarray, present: list[ClassShare], classes: int
) -> np.ndarray:
    """The class map [H, W] (over the model input) placed on the view's picture, its colours
    blended half over it, with a legend on the right."""
    view = legible(view)
    colours = palette(classes)
    placed = np.rint(view.place(class_map.astype(np.float32), nearest=True)).astype(np.int64)
    blend = 0.5 * view.picture.astype(np.float32) + 0.5 * colours[placed].astype(np.float32)
    shown = view.faded(np.clip(np.round(blend), 0, 255).astype(np.uint8))
    height = max(shown.shape[0], _ROW * len(present) + 8)
    canvas = np.full((height, shown.shape[1] + LEGEND_WIDTH, 3), 255, np.uint8)
    canvas[: shown.shape[0], : shown.shape[1]] = shown
    for row, share in enumerate(present):
        top, left = 4 + row * _ROW, shown.shape[1] + 6
        canvas[top : top + 12, left : left + 12] = colours[share.class_index]
        caption = f"{share.label} {100 * share.fraction:.1f}%"
        text.place(canvas, text.ink(caption, 11, (20, 20, 20)), (top, left + 16), darken=True)
    return canvas


def boxes_picture(
    view: UploadView, found: list[Detection], classes: int, input_size: tuple[int, int]
) -> np.ndarray:
    """Boxes (in the model input's pixels, `input_size` (H, W)) placed on the view's picture
    in class colours with `label score` badges, highest score drawn last (on top)."""
    view = legible(view)
    colours = palette(classes)
    shown = view.faded(view.picture).copy()
    for detection in reversed(found):
        box = view.box_on_picture(detection.box, input_size)
        colour = colours[detection.class_index % len(colours)]
        outline(shown, box, colour)
        caption = f"{detection.label} {detection.score:.2f}"
        top, left = max(0, int(box[1]) + 3), max(0, int(box[0]) + 4)
        text.place(shown, text.badge(caption, 10), (top, left), darken=False)
    return shown


def stack(pictures: list[np.ndarray]) -> np.ndarray:
    """Pictures one below the other on white, 8 px apart."""
    width = max(p.shape[1] for p in pictures)
    height = sum(p.shape[0] for p in pictures) + 8 * (len(pictures) - 1)
    canvas = np.full((height, width, 3), 255, np.uint8)
    top = 0
    for picture in pictures:
        canvas[top : top + picture.shape[0], : picture.shape[1]] = picture
        top += picture.shape[0] + 8
    return canvas
