"""What segmentation and detection models return, read one way.

Segmentation: torchvision's `{"out": [B, K, H, W], "aux": ...}`, or a plain [B, K, h, w]
tensor (a python/timm model); class scores are brought to the input size bilinearly, as
torchvision's own heads do. Detection: torchvision's list of `{"boxes", "labels", "scores"}`
per image, boxes in the input's pixels (its transform resizes inside and maps them back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel


def class_scores(output: Any, size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel class scores [B, K, H, W] at the input size `size` (H, W)."""
    if isinstance(output, Mapping):
        output = output["out"] if "out" in output else next(iter(output.values()))
    logits = getattr(output, "logits", output)  # a Hugging Face output object
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        raise InvalidInput(
            "model: a segmentation model must return [B, classes, H, W] scores or "
            "{'out': [B, classes, H, W]}",
            field="model",
        )
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits


def detections(output: Any) -> list[Mapping[str, torch.Tensor]]:
    """Per image {"boxes" [n, 4], "labels" [n], "scores" [n]}."""
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], list):
        output = output[1]  # scripted torchvision detectors return (losses, detections)
    if not isinstance(output, Sequence) or not all(
        isinstance(d, Mapping) and {"boxes", "labels", "scores"} <= set(d) for d in output
    ):
        raise InvalidInput(
            "model: a detection model must return one {'boxes', 'labels', 'scores'} per image",
            field="model",
        )
    return list(output)


@dataclass(frozen=True)
class Detection:
    """One box in the model input's pixels, [x0, y0, x1, y1]."""

    box: tuple[float, float, float, float]
    class_index: int
    label: str
    score: float


@dataclass(frozen=True)
class ClassShare:
    """A class present in a class map, with the fraction of pixels it takes."""

    class_index: int
    label: str
    fraction: float


def segment(model: LoadedModel, batch: torch.Tensor) -> np.ndarray:
    """int64 class map [B, H, W] at the input size (argmax of the class scores)."""
    size = (batch.shape[-2], batch.shape[-1])
    with torch.inference_mode():
        scores = class_scores(model.module(batch), size)
        return scores.argmax(dim=1).cpu().numpy().astype(np.int64)


def shares(class_map: np.ndarray, model: LoadedModel) -> list[ClassShare]:
    """Classes present in one map [H, W], largest first (then by index)."""
    counts = np.bincount(class_map.ravel(), minlength=model.spec.num_classes)
    total = class_map.size
    present = sorted(np.flatnonzero(counts), key=lambda c: (-counts[c], c))
    return [ClassShare(int(c), model.label(int(c)), float(counts[c] / total)) for c in present]


def detect(model: LoadedModel, batch: torch.Tensor) -> list[list[Detection]]:
    """Every image's detections, highest score first."""
    with torch.inference_mode():
        found = detections(model.module(batch))
    return [to_detections(model, image) for image in found]


def to_detections(model: LoadedModel, found: Mapping[str, torch.Tensor]) -> list[Detection]:
    boxes = found["boxes"].detach().float().cpu().numpy()
    labels = found["labels"].detach().cpu().numpy()
    scores = found["scores"].detach().float().cpu().numpy()
    order = np.argsort(-scores, kind="stable")
    return [
        Detection(
            box=(float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])),
            class_index=int(labels[i]),
            label=model.label(int(labels[i])),
            score=float(scores[i]),
        )
        for i in order
    ]


def detached(output: Any) -> Any:
    """The output with every tensor detached, its structure (dict, list, tuple) kept."""
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, Mapping):
        return {key: detached(value) for key, value in output.items()}
    if isinstance(output, list | tuple):
        return type(output)(detached(value) for value in output)
    return output


def output_rows(output: Any) -> int | None:
    """How many inputs an output answers for: a tensor's rows, a dict's first tensor's rows,
    a list's length (detections); None when it cannot be told."""
    if isinstance(output, torch.Tensor):
        return int(output.shape[0]) if output.ndim else None
    if isinstance(output, Mapping):
        first = next(iter(output.values()), None)
        return output_rows(first)
    if isinstance(output, list):
        return len(output)
    return None
