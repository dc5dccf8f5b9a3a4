"""What a served model is: a frozen description, independent of how it is loaded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RESIZE_MODES = ("squash", "crop", "letterbox")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
CLASSIFICATION, SEGMENTATION, DETECTION = "classification", "segmentation", "detection"
TASKS = (CLASSIFICATION, SEGMENTATION, DETECTION)


@dataclass(frozen=True)
class ModelSpec:
    """One model entry.

    Attributes:
        name: registry key used in URLs.
        architecture: `<source>:<target>`: `builtin:`, `torchvision:`, `timm:`, `hf:` or
            `python:` (see `model_registry.sources`).
        weights: a state_dict file, a source's own weights (`torchvision:<WEIGHTS>`,
            `timm:pretrained`, `builtin:<name>`) or None (random, or the `hf:` directory's).
        input_size: (height, width) the model is fed at.
        mean, std: per-channel normalization; their length is the number of input channels.
        num_classes: width of the classifier output.
        labels: one label per class, or None (labels are then the class indices).
        weights_required: when False, weights that cannot be found locally are replaced by
            random initialisation instead of failing start-up (the built-in defaults only).
        resize: how an upload becomes `input_size`: 'squash' (stretch the whole picture),
            'crop' (scale the short side to side / crop_pct, centre-crop) or 'letterbox'
            (fit inside, pad with the mean colour).
        crop_pct: the fraction of the scaled picture kept by 'crop' (torchvision: 224/256).
        interpolation: the resampling filter of that resize, as the weights were evaluated
            with (torchvision and Hugging Face ViT: bilinear; most timm weights: bicubic).
        options: keyword arguments for the source's builder (timm, hf config, python).
        task: 'classification' (logits [B, classes]), 'segmentation' (class maps, torchvision
            `{"out": [B, classes, H, W]}` or a tensor of that shape) or 'detection'
            (torchvision's list of {"boxes", "labels", "scores"} per image).
    """

    name: str
    architecture: str
    weights: str | None
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    labels: tuple[str, ...] | None = None
    weights_required: bool = True
    resize: str = "squash"
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    options: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)
    task: str = CLASSIFICATION

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError("crop_pct must be in (0, 1]")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}")

    @property
    def in_channels(self) -> int:
        return len(self.mean)

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels is not None else str(index)
