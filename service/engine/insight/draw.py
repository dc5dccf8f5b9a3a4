"""Charts drawn with Pillow and numpy: line charts by depth, scatter plots, titled pictures.

No matplotlib figure is built, as elsewhere in the engine (`render.py`): a figure costs
tens of milliseconds and a global backend, while these charts need a handful of lines,
dots and labels. matplotlib is used for its colormap tables only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import cast

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from PIL import Image, ImageDraw, ImageFont

_WHITE = (255, 255, 255)
_INK = (30, 30, 30)
_GRID = (225, 225, 225)
_AXIS = (120, 120, 120)


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _listed_colors(name: str) -> Sequence[Sequence[float]]:
    """The colour table of a qualitative colormap (tab10, tab20): RGB tuples of floats."""
    # matplotlib's stubs type the registry as Colormap and `.colors` as ArrayLike | ColorType
    return cast(Sequence[Sequence[float]], cast(ListedColormap, matplotlib.colormaps[name]).colors)


def _bytes(rgb: Sequence[float]) -> tuple[int, int, int]:
    red, green, blue = (int(round(c * 255)) for c in rgb[:3])
    return red, green, blue


def category_colors(count: int) -> list[tuple[int, int, int]]:
    """Distinct colours: tab10 up to 10 categories, tab20 up to 20, then a hue wheel."""
    table: Sequence[Sequence[float]]
    if count <= 10:
        table = _listed_colors("tab10")[:count]
    elif count <= 20:
        table = _listed_colors("tab20")[:count]
    else:
        table = [matplotlib.colormaps["hsv"](i / count)[:3] for i in range(count)]
    return [_bytes(rgb) for rgb in table]


def text_width(text: str, size: int) -> int:
    box = font(size).getbbox(text)
    return int(box[2] - box[0])


def titled(title: str, picture: np.ndarray, *, size: int = 12, margin: int = 8) -> np.ndarray:
    """`picture` under a title line, on a white canvas wide enough for both."""
    height, width = picture.shape[:2]
    canvas = Image.new(
        "RGB",
        (max(width, text_width(title, size)) + 2 * margin, height + size + 3 * margin),
        _WHITE,
    )
    ImageDraw.Draw(canvas).text((margin, margin), title, fill=_INK, font=font(size))
    canvas.paste(Image.fromarray(picture).convert("RGB"), (margin, size + 2 * margin))
    return np.asarray(canvas)


def stack(pictures: list[np.ndarray]) -> np.ndarray:
    """Pictures one under the other, left-aligned, on white."""
    width = max(p.shape[1] for p in pictures)
    canvas = Image.new("RGB", (width, sum(p.shape[0] for p in pictures)), _WHITE)
    top = 0
    for picture in pictures:
        canvas.paste(Image.fromarray(picture).convert("RGB"), (0, top))
        top += picture.shape[0]
    return np.asarray(canvas)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = [round(first, 10)]
    while ticks[-1] < high - step * 1e-9:  # the last tick reaches or passes `high`
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:.3g}"


def _rotated_text(text: str, size: int) -> Image.Image:
    width = text_width(text, size) + 2
    label = Image.new("L", (width, size + 4), 0)
    ImageDraw.Draw(label).text((0, 0), text, fill=255, font=font(size))
    return label.rotate(90, expand=True)


def line_chart(
    x_labels: list[str],
    values: list[float],
    *,
    title: str,
    y_range: tuple[float, float] | None = None,
    categories: list[str] | None = None,
    step: int = 16,
    height: int = 220,
) -> np.ndarray:
    """One series by position (depth): grey line, dots coloured by category, legend on top."""
    size = 10
    labels = [name if len(name) <= 22 else name[:21] + "~" for name in x_labels]
    bottom = max([text_width(t, size) for t in labels] + [10]) + 10
    kinds = list(dict.fromkeys(categories)) if categories else []
    legend_width = sum(text_width(kind, size) + 20 for kind in kinds)
    left, right = 56, 16
    top = 50 if kinds else 32  # title line, then the legend line, then the plot
    plot_width = max(360, step * len(values), legend_width, text_width(title, 12) - left + 8)
    canvas = Image.new("RGB", (left + plot_width + right, top + height + bottom), _WHITE)
    draw = ImageDraw.Draw(canvas)
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    low, high = y_range if y_range is not None else (min(0.0, min(finite)), max(finite))
    if high <= low:
        high = low + 1.0
    ticks = nice_ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])

    def y_of(value: float) -> float:
        return top + height - (value - low) / (high - low) * height

    def x_of(index: int) -> float:
        return left + (index + 0.5) * plot_width / max(len(values), 1)

    for tick in ticks:
        y = y_of(tick)
        draw.line((left, y, left + plot_width, y), fill=_GRID)
        label = _tick_label(tick)
        draw.text(
            (left - 6 - text_width(label, size), y - size / 2 - 1),
            label,
            fill=_INK,
            font=font(size),
        )
    draw.rectangle((left, top, left + plot_width, top + height), outline=_AXIS)
    draw.text((8, 8), title, fill=_INK, font=font(12))
    palette = dict(zip(kinds, category_colors(len(kinds)), strict=True))
    points = [(x_of(i), y_of(v)) for i, v in enumerate(values) if math.isfinite(v)]
    if len(points) > 1:
        draw.line(points, fill=(160, 160, 160), width=1)
    for i, value in enumerate(values):
        if not math.isfinite(value):
            continue
        x, y = x_of(i), y_of(value)
        colour = palette[categories[i]] if categories else (31, 119, 180)
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    for i, text in enumerate(labels):
        rotated = _rotated_text(text, size)
        position = (int(x_of(i) - rotated.width / 2), top + height + 6)
        canvas.paste(Image.new("RGB", rotated.size, _INK), position, rotated)
    legend_x = left
    for kind in kinds:
        draw.ellipse((legend_x, 30, legend_x + 7, 37), fill=palette[kind])
        draw.text((legend_x + 10, 28), kind, fill=_INK, font=font(size))
        legend_x += text_width(kind, size) + 20
    return np.asarray(canvas)


def scatter(
    points: np.ndarray,
    labels: list[str] | None,
    *,
    title: str,
    thumbnails: np.ndarray | None = None,
    side: int = 560,
) -> np.ndarray:
    """2-D points in a square plot, coloured by label (legend on the right), optional thumbnails.

    Args:
        points: [N, 2].
        labels: one per point, or None (one colour).
        thumbnails: uint8 [N, h, w, 3] drawn centred on the points instead of dots.
    """
    size = 10
    margin, top = 16, 30
    kinds = sorted(dict.fromkeys(labels), key=_natural) if labels else []
    shown = kinds[:30]
    legend_width = max([text_width(k, size) for k in shown] + [40]) + 30 if kinds else 0
    canvas = Image.new("RGB", (side + 2 * margin + legend_width, side + top + margin), _WHITE)
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, 8), title, fill=_INK, font=font(12))
    draw.rectangle((margin, top, margin + side, top + side), outline=_AXIS)
    palette = dict(zip(kinds, category_colors(len(kinds)), strict=True))
    pad = 12 if thumbnails is None else max(thumbnails.shape[1], thumbnails.shape[2]) // 2 + 4
    low = points.min(axis=0)
    span = np.maximum(points.max(axis=0) - low, 1e-12)
    # One scale for both axes: distances in the picture are distances in the embedding.
    scale = (side - 2 * pad) / float(span.max())
    offset = (side - 2 * pad - span * scale) / 2
    xy = (points - low) * scale + offset + pad
    xy[:, 1] = side - xy[:, 1]  # y up
    for i, (x, y) in enumerate(xy):
        colour = palette[labels[i]] if labels else (31, 119, 180)
        cx, cy = margin + x, top + y
        if thumbnails is not None:
            thumb = Image.fromarray(thumbnails[i])
            corner = (int(cx - thumb.width / 2), int(cy - thumb.height / 2))
            draw.rectangle(
                (corner[0] - 1, corner[1] - 1, corner[0] + thumb.width, corner[1] + thumb.height),
                fill=colour,
            )
            canvas.paste(thumb, corner)
        else:
            draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=colour)
    legend_left = margin * 2 + side
    for row, kind in enumerate(shown):
        y = top + 4 + row * 16
        draw.ellipse((legend_left, y + 2, legend_left + 8, y + 10), fill=palette[kind])
        draw.text((legend_left + 14, y), kind, fill=_INK, font=font(size))
    if len(kinds) > len(shown):
        draw.text(
            (legend_left, top + 4 + len(shown) * 16),
            f"+{len(kinds) - len(shown)} more",
            fill=_INK,
            font=font(size),
        )
    return np.asarray(canvas)


def _natural(text: str) -> tuple[int, float, str]:
    """Numbers in numeric order before other labels in text order."""
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def image_pixels(image: np.ndarray) -> np.ndarray:
    """A float [C, H, W] image in [0, 1] -> uint8 [H, W] (one channel) or [H, W, 3]."""
    pixels = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))


def thumbnails(pictures: np.ndarray, side: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> [N, h, w, 3] with the longer side `side`."""
    height, width = pictures.shape[1:3]
    factor = side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.stack(
        [np.asarray(Image.fromarray(p).resize(size, Image.Resampling.BILINEAR)) for p in pictures]
    )
