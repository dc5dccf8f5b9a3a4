"""Text on pictures as cached sprites: a label is drawn by Pillow once, then pasted as pixels.

A view of 32 channels writes 32 channel numbers and a few titles; drawing each with Pillow
costs about as much as deflating the whole picture. The same strings recur from view to view
(channel numbers, layer titles), so each is rendered once and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class Sprite:
    """Pixels [h, w, 3] to place at (anchor + offset)."""

    pixels: np.ndarray
    offset: tuple[int, int]  # (dy, dx) from the anchor to the sprite's top-left corner


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4096)
def badge(text: str, size: int) -> Sprite:
    """White text on a black box with 2/1 px padding, anchored where the text starts."""
    left, top, right, bottom = _bbox(text, size)
    box = (left - 2, top - 1, right + 2, bottom + 1)
    image = Image.new("RGB", (box[2] - box[0] + 1, box[3] - box[1] + 1), (0, 0, 0))
    ImageDraw.Draw(image).text((-box[0], -box[1]), text, fill=(255, 255, 255), font=font(size))
    return _frozen(image, (box[1], box[0]))


@lru_cache(maxsize=4096)
def ink(text: str, size: int, colour: tuple[int, int, int]) -> Sprite:
    """Dark text on white, anchored where the text starts; paste it with `darken`."""
    left, top, right, bottom = _bbox(text, size)
    image = Image.new("RGB", (max(1, right - left), max(1, bottom - top)), (255, 255, 255))
    ImageDraw.Draw(image).text((-left, -top), text, fill=colour, font=font(size))
    return _frozen(image, (top, left))


def _bbox(text: str, size: int) -> tuple[int, int, int, int]:
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font(size))
    return int(box[0]), int(box[1]), int(box[2]), int(box[3])


def _frozen(image: Image.Image, offset: tuple[int, int]) -> Sprite:
    pixels = np.asarray(image).copy()
    pixels.flags.writeable = False
    return Sprite(pixels, offset)


def place(canvas: np.ndarray, sprite: Sprite, at: tuple[int, int], *, darken: bool) -> None:
    """Paste `sprite` into `canvas` [H, W, 3] in place, clipped to the canvas.

    `darken=True` keeps the darker pixel of the two, which is exact for dark text on a light
    background (the text's own white background leaves the canvas as it was).
    """
    top, left = at[0] + sprite.offset[0], at[1] + sprite.offset[1]
    height, width = sprite.pixels.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, canvas.shape[0]), min(left + width, canvas.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    part = sprite.pixels[y0 - top : y1 - top, x0 - left : x1 - left]
    target = canvas[y0:y1, x0:x1]
    if darken:
        np.minimum(target, part, out=target)
    else:
        target[...] = part
