"""Where an upload lands on the model input: the resize-and-crop plan, as numbers only.

Nothing here touches pixels, so a plan for any declared size costs nothing; `images` follows
it and allocates only what the plan keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from model_registry.spec import ModelSpec


@dataclass(frozen=True)
class Geometry:
    """How an upload was fitted to the model's input, to draw maps back onto the upload.

    Attributes:
        resize: 'squash', 'crop' or 'letterbox' (see `ModelSpec.resize`).
        interpolation: the resampling filter used (see `ModelSpec.interpolation`).
        source_size: (height, width) of the upload.
        box: (left, top, right, bottom) in upload pixels of the region that fills the whole
            model input: the picture itself (squash), a centred part of it (crop), or a
            larger region whose outside is padding (letterbox).
    """

    resize: str
    source_size: tuple[int, int]
    box: tuple[float, float, float, float]
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, object]:
        return {
            "resize": self.resize,
            "interpolation": self.interpolation,
            "source_size": list(self.source_size),
            "box": [round(v, 3) for v in self.box],
        }


def crop_plan(spec: ModelSpec, width: int, height: int) -> tuple[int, int, int, int]:
    """(resized width, height, crop left, top) exactly as torchvision and timm evaluate.

    The short side goes to floor(side / crop_pct) (torchvision: 256 for 224), the long side
    follows, truncated; a non-square input scales each side (timm); the centre is cut with
    torchvision's rounding. Only numbers: a 1 x 20,002 picture plans a 256 x 5,120,512 copy
    that nobody allocates (see `images.to_model_image`).
    """
    out_h, out_w = spec.input_size
    if out_h == out_w:
        short = math.floor(out_h / spec.crop_pct + 1e-6)
        if width <= height:
            size = (short, int(short * height / width))
        else:
            size = (int(short * width / height), short)
    else:
        scale = max(out_h / spec.crop_pct / height, out_w / spec.crop_pct / width)
        size = (max(out_w, int(width * scale)), max(out_h, int(height * scale)))
    left = int(round((size[0] - out_w) / 2.0))
    top = int(round((size[1] - out_h) / 2.0))
    return size[0], size[1], left, top


def _box(spec: ModelSpec, width: int, height: int) -> tuple[float, float, float, float]:
    """The upload region mapped onto the whole model input for `spec.resize`."""
    out_h, out_w = spec.input_size
    if spec.resize == "squash":
        return (0.0, 0.0, float(width), float(height))
    if spec.resize == "crop":
        resized_w, resized_h, left, top = crop_plan(spec, width, height)
        sx, sy = width / resized_w, height / resized_h
        # min(): float rounding must not put the crop's edge past the picture's.
        right, bottom = min((left + out_w) * sx, width), min((top + out_h) * sy, height)
        return (left * sx, top * sy, float(right), float(bottom))
    scale = min(out_h / height, out_w / width)  # letterbox: the picture fits inside
    box_w, box_h = out_w / scale, out_h / scale
    x0, y0 = (width - box_w) / 2, (height - box_h) / 2
    return (x0, y0, x0 + box_w, y0 + box_h)


def fit_geometry(source_size: tuple[int, int], spec: ModelSpec) -> Geometry:
    """What `images.to_model_image` does to a picture of `source_size` (height, width)."""
    box = _box(spec, source_size[1], source_size[0])
    return Geometry(spec.resize, source_size, box, spec.interpolation)
