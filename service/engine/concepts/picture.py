"""The concepts of a request drawn: one colour per concept over each picture, and a legend.

Each pixel takes the colour of its strongest concept, as bright as that concept's heatmap
value there, blended over the picture (pytorch-grad-cam's `show_factorization_on_image`
with its `run_dff_on_image` weight of 0.3 for the picture). Colours are the categorical
table of `insight.draw` (tab10, tab20, then a hue wheel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from service.engine import text
from service.engine.dense.pictures import legible
from service.engine.insight.draw import category_colors, text_width
from service.engine.upload_view import UploadView

PICTURE_WEIGHT = 0.3
_GAP = 8
_ROW = 16
_SWATCH = 12
_SIZE = 11
_INK = (20, 20, 20)


def concept_overlay(view: UploadView, heatmaps: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Heatmaps [K, H, W] over the model input -> uint8 [h, w, 3] on the view's picture."""
    placed = view.place(heatmaps)
    strongest = placed.argmax(axis=0)
    value = np.take_along_axis(placed, strongest[None], axis=0)[0]
    colour = colours[strongest].astype(np.float32) * np.clip(value, 0.0, 1.0)[..., None]
    blend = PICTURE_WEIGHT * view.picture.astype(np.float32) + (1 - PICTURE_WEIGHT) * colour
    return view.faded(np.clip(np.round(blend), 0, 255).astype(np.uint8))


def legend_lines(
    tops: Sequence[Sequence[tuple[int, float]]] | None, k: int, label: Callable[[int], str]
) -> list[str]:
    """'concept 0: cat 0.41, dog 0.22' per concept (the concept number alone without classes)."""
    if tops is None:
        return [f"concept {i}" for i in range(k)]
    return [
        f"concept {i}: " + ", ".join(f"{label(c)} {p:.2f}" for c, p in row)
        for i, row in enumerate(tops)
    ]


def concepts_picture(
    views: Sequence[UploadView],
    heatmaps: np.ndarray,
    lines: Sequence[str],
) -> np.ndarray:
    """The pictures side by side, each with heatmaps [B, K, H, W] drawn over it, and the
    legend (one line per concept, in its colour) on the right."""
    k = heatmaps.shape[1]
    colours = np.asarray(category_colors(k), dtype=np.uint8)
    drawn = [
        concept_overlay(legible(v), maps, colours) for v, maps in zip(views, heatmaps, strict=True)
    ]
    legend_width = _SWATCH + 10 + max(text_width(line, _SIZE) for line in lines)
    height = max(max(p.shape[0] for p in drawn), _ROW * k + 8)
    width = sum(p.shape[1] + _GAP for p in drawn) + legend_width
    canvas = np.full((height, width, 3), 255, np.uint8)
    left = 0
    for picture in drawn:
        canvas[: picture.shape[0], left : left + picture.shape[1]] = picture
        left += picture.shape[1] + _GAP
    for row, line in enumerate(lines):
        top = 4 + row * _ROW
        canvas[top : top + _SWATCH, left : left + _SWATCH] = colours[row]
        text.place(canvas, text.ink(line, _SIZE, _INK), (top, left + _SWATCH + 4), darken=True)
    return canvas
