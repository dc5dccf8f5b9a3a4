"""Charts drawn into rendered pictures: colorbars with ticks in value units, and sorted bar
charts for vectors (1x1 maps, linear outputs), which as one-pixel tiles would all look flat.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.engine.render import colormap_lut
from service.engine.text import font as cached_font

_INK = (20, 20, 20)
_GRID = (200, 200, 200)
_POSITIVE = (47, 111, 222)
_NEGATIVE = (214, 69, 65)
_FONT_SIZE = 11
BAR_HEIGHT = 14
BAR_CHART_WIDTH = 320  # fixed, so the portal can find the grids beside a chart
COLORBAR_HEIGHT = 30


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return cached_font(_FONT_SIZE)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) inside [low, high].

    A constant range gives its one value; about `count` ticks otherwise.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high < low:
        low, high = high, low
    if high == low:
        return [float(low)]
    raw = (high - low) / max(1, count)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else round(value, 12))
        value += step
    return ticks


def tick_label(value: float) -> str:
    """A tick in few characters: 3 significant digits, an exponent only for extreme values."""
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-3 or magnitude >= 1e5):
        return f"{value:.1e}"
    return f"{value:.3g}"


def colorbar(
    low: float, high: float, *, colormap: str, width: int, ends: tuple[str, str] | None = None
) -> np.ndarray:
    """A horizontal colorbar `width` pixels wide: the colormap from `low` (left) to `high`
    (right), ticks in the values' units beneath, uint8 [COLORBAR_HEIGHT, width, 3].

    Ticks that would overlap are dropped. `ends` labels only the two ends instead (for
    tiles each scaled to their own range, where no one value scale applies). Bars are kept
    (read-only; callers copy them into their pictures): with `ends`, every view of a layer
    at one width and colormap draws the same bar, and drawing its text is not cheap.
    """
    if ends is not None:
        low = high = 0.0  # not shown
    return _colorbar(low, high, colormap, max(8, width), ends)


@lru_cache(maxsize=256)
def _colorbar(
    low: float, high: float, colormap: str, width: int, ends: tuple[str, str] | None
) -> np.ndarray:
    lut = colormap_lut(colormap)
    strip = lut[np.round(np.linspace(0, 255, width)).astype(np.int64)]
    canvas = np.full((COLORBAR_HEIGHT, width, 3), 255, np.uint8)
    canvas[:10] = strip[None]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = _font()
    span = high - low
    if ends is not None:
        marks = [(0.0, ends[0]), (1.0, ends[1])]
    elif span <= 0:
        marks = [(0.0, tick_label(low))]
    else:
        ticks = nice_ticks(low, high, max(2, min(6, width // 50)))
        marks = [((value - low) / span, tick_label(value)) for value in ticks]
    taken: list[tuple[float, float]] = []
    for fraction, text in marks:
        x = round(fraction * (width - 1))
        text_width = draw.textlength(text, font=font)
        left = min(max(0.0, x - text_width / 2), width - text_width)
        if any(left < end + 4 and left + text_width > start - 4 for start, end in taken):
            continue
        taken.append((left, left + text_width))
        draw.line((x, 10, x, 13), fill=_INK)
        draw.text((left, 14), text, fill=_INK, font=font)
    bar = np.asarray(image)
    bar.flags.writeable = False
    return bar


def bar_chart(
    values: np.ndarray, labels: list[str], *, width: int = BAR_CHART_WIDTH, top: int = 24
) -> np.ndarray:
    """A vector as horizontal bars sorted by value, largest first: uint8 [h, width, 3].

    Shows the `top` largest values (all of them when there are no more than `top`), each bar
    labelled with its name and value, on one zero line shared by positive and negative bars.
    """
    order = np.argsort(-values, kind="stable")[:top]
    shown = values[order].astype(np.float64)
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max((probe.textlength(labels[i], font=font) for i in order), default=0)
    value_texts = [tick_label(float(v)) for v in shown]
    value_width = max((probe.textlength(t, font=font) for t in value_texts), default=0)
    label_width = min(label_width, width / 3)
    height = len(order) * BAR_HEIGHT + 20
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    left = int(label_width) + 6
    right = width - int(value_width) - 8
    low, high = min(0.0, float(shown.min(initial=0))), max(0.0, float(shown.max(initial=0)))
    span = (high - low) or 1.0
    zero = left + round((0 - low) / span * (right - left))
    for row, (index, value, text) in enumerate(zip(order, shown, value_texts, strict=True)):
        top_y = row * BAR_HEIGHT + 2
        end = left + round((value - low) / span * (right - left))
        colour = _POSITIVE if value >= 0 else _NEGATIVE
        draw.rectangle((min(zero, end), top_y + 2, max(zero, end), top_y + BAR_HEIGHT - 3), colour)
        draw.text(
            (left - 4 - probe.textlength(labels[index], font=font), top_y),
            labels[index],
            fill=_INK,
            font=font,
        )
        draw.text((right + 4, top_y), text, fill=_INK, font=font)
    draw.line((zero, 0, zero, len(order) * BAR_HEIGHT + 2), fill=_GRID)
    note = f"{len(values)} values, sorted"
    if len(order) < len(values):
        note = f"top {len(order)} of {len(values)} by value"
    draw.text((left, height - 16), note, fill=(102, 112, 133), font=font)
    return np.asarray(image)
