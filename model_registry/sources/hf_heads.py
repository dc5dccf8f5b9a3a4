"""Hugging Face models made to answer as torchvision's do, whatever their task.

The forward of the loaded instance is replaced (no wrapper module, so layer names stay those
of `named_modules()` on the transformers model):

- classification: the `.logits` tensor [B, classes];
- segmentation (`AutoModelForSemanticSegmentation`): `{"out": [B, classes, H, W]}`, the
  logits brought to the input size bilinearly, as the image processors'
  `post_process_semantic_segmentation` does before its argmax;
- detection (`AutoModelForObjectDetection`, DETR-style `logits` and `pred_boxes`): one
  `{"boxes", "labels", "scores"}` per image, as the image processors'
  `post_process_object_detection` gives them with the input size as target size. A model
  with a "no object" class (logits one wider than `num_labels`: DETR, YOLOS) scores each
  query by its softmax without that class; one without (Conditional and Deformable DETR)
  takes the `top_k` highest sigmoid scores over queries and classes. Boxes go from
  relative (cx, cy, w, h) to corners in input pixels; scores at or below the threshold are
  dropped. Everything stays differentiable, so box targets reach the layers.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model_registry.spec import CLASSIFICATION, DETECTION, SEGMENTATION

# The class names in config.json's `architectures` that say the task.
_SUFFIXES = {
    "ForImageClassification": CLASSIFICATION,
    "ForSemanticSegmentation": SEGMENTATION,
    "ForObjectDetection": DETECTION,
}
AUTO_CLASSES = {
    CLASSIFICATION: "AutoModelForImageClassification",
    SEGMENTATION: "AutoModelForSemanticSegmentation",
    DETECTION: "AutoModelForObjectDetection",
}
THRESHOLD_OPTION = "detection_threshold"
DEFAULT_THRESHOLD = 0.5  # post_process_object_detection's default
TOP_K = 100  # Conditional/Deformable DETR processors' default


def task_from_config(config: Mapping[str, Any]) -> str | None:
    """The task config.json's `architectures` names (e.g. SegformerForSemanticSegmentation)."""
    for name in config.get("architectures") or ():
        for suffix, task in _SUFFIXES.items():
            if str(name).endswith(suffix):
                return task
    return None


def auto_class(task: str) -> Any:
    """transformers' Auto class for `task`."""
    import transformers

    return getattr(transformers, AUTO_CLASSES[task])


def threshold_of(options: Mapping[str, Any] | None) -> float:
    """The `detection_threshold` option; ValueError unless a number in [0, 1)."""
    value = (options or {}).get(THRESHOLD_OPTION, DEFAULT_THRESHOLD)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{THRESHOLD_OPTION} must be a number in [0, 1), not {value!r}")
    return float(value)


def config_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options that are config fields (all but ours)."""
    return {k: v for k, v in (options or {}).items() if k != THRESHOLD_OPTION}


def _output(module: nn.Module, pixel_values: torch.Tensor) -> Any:
    return type(module).forward(module, pixel_values=pixel_values, return_dict=True)


def _logits_forward(self: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    return _output(self, pixel_values).logits


def _segmentation_forward(self: nn.Module, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    logits = _output(self, pixel_values).logits
    size = (int(pixel_values.shape[-2]), int(pixel_values.shape[-1]))
    return {"out": F.interpolate(logits, size=size, mode="bilinear", align_corners=False)}


def corner_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Relative (cx, cy, w, h) [..., 4] -> (x0, y0, x1, y1) in the pixels of `size` (H, W)."""
    cx, cy, w, h = boxes.unbind(-1)
    corners = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    height, width = size
    return corners * corners.new_tensor([width, height, width, height])


def detections_of(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    *,
    labels: int,
    size: tuple[int, int],
    threshold: float,
) -> list[dict[str, torch.Tensor]]:
    """Per image {"boxes", "labels", "scores"} from DETR-style logits [B, Q, K] and boxes."""
    corners = corner_boxes(boxes, size)
    if logits.shape[-1] == labels + 1:  # the last class is "no object"
        scores, classes = logits.softmax(-1)[..., :-1].max(-1)
    else:
        flat = logits.sigmoid().flatten(1)
        scores, index = flat.topk(min(TOP_K, flat.shape[1]), dim=1)
        classes = index % logits.shape[-1]
        queries = torch.div(index, logits.shape[-1], rounding_mode="floor")
        corners = corners.gather(1, queries[..., None].expand(-1, -1, 4))
    found = []
    for score, label, box in zip(scores, classes, corners, strict=True):
        keep = score > threshold
        found.append({"boxes": box[keep], "labels": label[keep], "scores": score[keep]})
    return found


def _detection_forward(
    self: nn.Module, pixel_values: torch.Tensor, *, threshold: float
) -> list[dict[str, torch.Tensor]]:
    output = _output(self, pixel_values)
    if getattr(output, "logits", None) is None or getattr(output, "pred_boxes", None) is None:
        raise TypeError(
            f"{type(self).__name__} does not answer DETR-style `logits` and `pred_boxes`; "
            "hf: detection models must"
        )
    size = (int(pixel_values.shape[-2]), int(pixel_values.shape[-1]))
    labels = int(self.config.num_labels)
    return detections_of(
        output.logits, output.pred_boxes, labels=labels, size=size, threshold=threshold
    )


def answer_as_torchvision(module: nn.Module, task: str, *, threshold: float) -> nn.Module:
    """Replace this instance's forward so it answers as torchvision's models of `task` do.

    A bound method on the instance, so `copy.deepcopy(module)` runs its own layers.
    """
    if task == SEGMENTATION:
        forward: Any = _segmentation_forward
    elif task == DETECTION:
        forward = functools.partial(_detection_forward, threshold=threshold)
    else:
        forward = _logits_forward
    module.forward = types.MethodType(forward, module)
    return module
