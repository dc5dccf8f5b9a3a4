"""Pictures of segmentation masks (blended, with a legend) and of detection boxes."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np

from service.engine import text
from service.engine.dense.outputs import ClassShare, Detection
from service.engine.render import input_picture

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


def _scaled(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """The picture enlarged so its longer side is at least MIN_SIDE, and the factor used."""
    height, width = pixels.shape[:2]
    side = max(MIN_SIDE, height, width)
    shown = input_picture(pixels, longer_side=side)
    return shown, shown.shape[1] / width


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
    pixels: np.ndarray, class_map: np.ndarray, present: list[ClassShare], classes: int
) -> np.ndarray:
    """The class map's colours blended (half) over the input, with a legend on the right."""
    colours = palette(classes)
    blend = 0.5 * pixels.astype(np.float32) + 0.5 * colours[class_map].astype(np.float32)
    shown, _ = _scaled(np.clip(np.round(blend), 0, 255).astype(np.uint8))
    height = max(shown.shape[0], _ROW * len(present) + 8)
    canvas = np.full((height, shown.shape[1] + LEGEND_WIDTH, 3), 255, np.uint8)
    canvas[: shown.shape[0], : shown.shape[1]] = shown
    for row, share in enumerate(present):
        top, left = 4 + row * _ROW, shown.shape[1] + 6
        canvas[top : top + 12, left : left + 12] = colours[share.class_index]
        caption = f"{share.label} {100 * share.fraction:.1f}%"
        text.place(canvas, text.ink(caption, 11, (20, 20, 20)), (top, left + 16), darken=True)
    return canvas


def boxes_picture(pixels: np.ndarray, found: list[Detection], classes: int) -> np.ndarray:
    """Boxes in class colours with `label score` badges, highest score drawn last (on top)."""
    colours = palette(classes)
    shown, factor = _scaled(pixels)
    shown = shown.copy()
    for detection in reversed(found):
        box = [v * factor for v in detection.box]
        colour = colours[detection.class_index % len(colours)]
        outline(shown, box, colour)
        caption = f"{detection.label} {detection.score:.2f}"
        text.place(shown, text.badge(caption, 10), (int(box[1]) + 3, int(box[0]) + 4), darken=False)
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
