"""Pictures of attribution maps: heatmaps over the upload, gradient images, saliency.

Maps cover the model input; they are drawn on the uploaded picture's own geometry through an
`UploadView` (the model input itself for `canvas=input`). Pixels outside a crop, which the
model never saw, are faded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.engine.attribution.explain import CamResult, GradientResult
from service.engine.dense.pictures import outline, region_outline
from service.engine.render import colormap_lut, panel, unit_range
from service.engine.upload_view import UploadView

HEATMAP = "heatmap"
GRADIENT = "gradient"
POSITIVE = "positive"
NEGATIVE = "negative"
VIEWS = (HEATMAP, GRADIENT, POSITIVE, NEGATIVE)


@dataclass(frozen=True)
class Look:
    """How maps are drawn: a matplotlib colormap, the heatmap's weight over the input (alpha)."""

    colormap: str = "jet"
    alpha: float = 0.5
    view: str = HEATMAP
    canvas: str = "upload"


def colored(values: np.ndarray, view: UploadView, look: Look) -> np.ndarray:
    """A map [H, W] min-max scaled over the model input, placed on the view, through the
    colormap: uint8 [h, w, 3]."""
    unit = view.place(unit_range(values[None].astype(np.float32), "channel")[0])
    index = np.clip(np.round(unit * 255), 0, 255).astype(np.uint8)
    return view.faded(colormap_lut(look.colormap)[index])


def heatmap_over(values: np.ndarray, view: UploadView, look: Look) -> np.ndarray:
    """The map as a heatmap blended over the view's picture with weight alpha."""
    colour = colored(values, view, look).astype(np.float32)
    blend = look.alpha * colour + (1 - look.alpha) * view.picture.astype(np.float32)
    return view.faded(np.clip(np.round(blend), 0, 255).astype(np.uint8))


def gradient_image(values: np.ndarray, view: UploadView) -> np.ndarray:
    """Gradients [C, H, W] as an image: standardized, scaled by 0.1 around grey (the
    keras-grad-cam / pytorch-grad-cam `deprocess_image` convention) -> uint8 [h, w, 3]."""
    image = (values - values.mean()) / (values.std() + 1e-5) * 0.1 + 0.5
    nearest = view.magnification(values.shape[-2:]) >= 2
    placed = view.place(np.clip(image, 0, 1), nearest=nearest)
    pixels = np.clip(np.round(placed * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    pixels = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    return view.faded(np.ascontiguousarray(pixels))


def gradient_view(values: np.ndarray, view: UploadView, look: Look) -> np.ndarray:
    """One gradient map [C, H, W] drawn as `look.view` on the view's picture."""
    if look.view == GRADIENT:
        return gradient_image(values, view)
    if look.view == POSITIVE:
        return colored(np.clip(values, 0, None).max(axis=0), view, look)
    if look.view == NEGATIVE:
        return colored(np.clip(-values, 0, None).max(axis=0), view, look)
    return heatmap_over(np.abs(values).max(axis=0), view, look)


def _title(prefix: str, target: int, label: Callable[[int], str]) -> str:
    name = label(target)
    return f"{prefix} | {target}" + (f" {name}" if name != str(target) else "")


_MARK = (255, 255, 255)


def _marked(
    picture: np.ndarray, result: CamResult | GradientResult, view: UploadView, at: tuple[int, int]
) -> np.ndarray:
    """The target drawn on a map: its box (detection) or its region's outline (segmentation),
    both placed on the view's picture as the map is."""
    if result.boxes is None and result.regions is None:
        return picture
    image, slot = at
    picture = picture.copy()
    if result.boxes is not None:
        box = view.box_on_picture(result.boxes[image, slot], result.inputs.shape[1:3])
        outline(picture, box, _MARK)
    if result.regions is not None:
        region = view.place(result.regions[image, slot].astype(np.float32), nearest=True) > 0.5
        region &= view.inside
        if not region.all():
            region_outline(picture, region, _MARK)
    return picture


def _panel(
    views: Sequence[UploadView],
    drawings: Callable[[int, UploadView], list[tuple[str, np.ndarray]]],
) -> np.ndarray:
    """Per image: its picture, then its titled drawings, one row each."""
    return panel(
        [
            [("input", view.faded(view.picture)), *drawings(image, view)]
            for image, view in enumerate(views)
        ]
    )


def _maps_panel(
    result: CamResult | GradientResult,
    views: Sequence[UploadView],
    label: Callable[[int], str],
    named: Sequence[tuple[str, np.ndarray]],
    draw: Callable[[np.ndarray, UploadView], np.ndarray],
) -> np.ndarray:
    """Per image: the picture, then for each (name, maps) and target its map drawn on it."""

    def drawings(image: int, view: UploadView) -> list[tuple[str, np.ndarray]]:
        return [
            (
                # A unit's channel is no class index: its title is the unit itself.
                f"{name} | {result.unit}" if result.unit else _title(name, int(target), label),
                _marked(draw(maps[image, slot], view), result, view, (image, slot)),
            )
            for name, maps in named
            for slot, target in enumerate(result.targets[image])
        ]

    return _panel(views, drawings)


def cam_panel(
    result: CamResult, views: Sequence[UploadView], look: Look, label: Callable[[int], str]
) -> np.ndarray:
    """Per image: the picture, then one heatmap per layer and target drawn on it."""
    layers = [(layer.name, layer.maps) for layer in result.layers]
    return _maps_panel(result, views, label, layers, lambda m, view: heatmap_over(m, view, look))


def gradient_panel(
    result: GradientResult, views: Sequence[UploadView], look: Look, label: Callable[[int], str]
) -> np.ndarray:
    """Per image: the picture, then one drawing per target on it."""
    named = [(result.method, result.values)]
    return _maps_panel(result, views, label, named, lambda v, view: gradient_view(v, view, look))
