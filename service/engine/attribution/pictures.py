"""Pictures of attribution maps: heatmaps over the input, gradient images, saliency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from service.engine.attribution.explain import CamResult, GradientResult
from service.engine.dense.pictures import outline, region_outline
from service.engine.render import colormap_lut, input_picture, panel, unit_range

MAX_DISPLAY = 320
MIN_DISPLAY = 128

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


def _display_side(height: int, width: int) -> int:
    return min(MAX_DISPLAY, max(MIN_DISPLAY, height, width))


def _resize(unit: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if unit.shape == size:
        return unit
    tensor = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def colored(values: np.ndarray, size: tuple[int, int], look: Look) -> np.ndarray:
    """A map [H, W] min-max scaled, resized to `size`, through the colormap: uint8 [h, w, 3]."""
    unit = _resize(unit_range(values[None].astype(np.float32), "channel")[0], size)
    index = np.clip(np.round(unit * 255), 0, 255).astype(np.uint8)
    return colormap_lut(look.colormap)[index]


def heatmap_over(values: np.ndarray, background: np.ndarray, look: Look) -> np.ndarray:
    """The map as a heatmap blended over `background` (uint8 [h, w, 3]) with weight alpha."""
    colour = colored(values, background.shape[:2], look).astype(np.float32)
    blend = look.alpha * colour + (1 - look.alpha) * background.astype(np.float32)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def gradient_image(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Gradients [C, H, W] as an image: standardized, scaled by 0.1 around grey (the
    keras-grad-cam / pytorch-grad-cam `deprocess_image` convention) -> uint8 [h, w, 3]."""
    image = (values - values.mean()) / (values.std() + 1e-5) * 0.1 + 0.5
    pixels = (
        np.clip(np.round(np.clip(image, 0, 1) * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    )
    pixels = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    resample = (
        Image.Resampling.NEAREST if size[0] >= 2 * pixels.shape[0] else Image.Resampling.BILINEAR
    )
    return np.asarray(Image.fromarray(pixels).resize((size[1], size[0]), resample))


def gradient_view(values: np.ndarray, background: np.ndarray, look: Look) -> np.ndarray:
    """One gradient map [C, H, W] drawn as `look.view` at the background's size."""
    size = background.shape[:2]
    if look.view == GRADIENT:
        return gradient_image(values, size)
    if look.view == POSITIVE:
        return colored(np.clip(values, 0, None).max(axis=0), size, look)
    if look.view == NEGATIVE:
        return colored(np.clip(-values, 0, None).max(axis=0), size, look)
    return heatmap_over(np.abs(values).max(axis=0), background, look)


def _title(prefix: str, target: int, label: Callable[[int], str]) -> str:
    name = label(target)
    return f"{prefix} | {target}" + (f" {name}" if name != str(target) else "")


_MARK = (255, 255, 255)


def _marked(picture: np.ndarray, result: CamResult | GradientResult, image: int, slot: int):
    """The target drawn on a map: its box (detection) or its region's outline (segmentation)."""
    if result.boxes is None and result.regions is None:
        return picture
    picture = picture.copy()
    height, width = result.inputs.shape[1:3]
    factor = picture.shape[1] / width
    if result.boxes is not None:
        outline(picture, [float(v) * factor for v in result.boxes[image, slot]], _MARK)
    if result.regions is not None:
        region = result.regions[image, slot].astype(np.uint8) * 255
        size = (picture.shape[1], picture.shape[0])
        scaled = np.asarray(Image.fromarray(region).resize(size, Image.Resampling.NEAREST)) > 0
        if not scaled.all():
            region_outline(picture, scaled, _MARK)
    return picture


def cam_panel(result: CamResult, look: Look, label: Callable[[int], str]) -> np.ndarray:
    """Per image: the input, then one heatmap per layer and target."""
    rows = []
    for image in range(result.inputs.shape[0]):
        pixels = result.inputs[image]
        background = input_picture(pixels, longer_side=_display_side(*pixels.shape[:2]))
        row = [("input", background)]
        for layer in result.layers:
            for slot, target in enumerate(result.targets[image]):
                title = _title(layer.name, int(target), label)
                heatmap = heatmap_over(layer.maps[image, slot], background, look)
                row.append((title, _marked(heatmap, result, image, slot)))
        rows.append(row)
    return panel(rows)


def gradient_panel(result: GradientResult, look: Look, label: Callable[[int], str]) -> np.ndarray:
    """Per image: the input, then one picture per target."""
    rows = []
    for image in range(result.inputs.shape[0]):
        pixels = result.inputs[image]
        background = input_picture(pixels, longer_side=_display_side(*pixels.shape[:2]))
        row = [("input", background)]
        for slot, target in enumerate(result.targets[image]):
            title = _title(result.method, int(target), label)
            view = gradient_view(result.values[image, slot], background, look)
            row.append((title, _marked(view, result, image, slot)))
        rows.append(row)
    return panel(rows)
