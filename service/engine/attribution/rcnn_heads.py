"""Two-stage detectors (torchvision's Faster, Mask and Keypoint R-CNN): detections whose
scores and boxes carry gradients without a graph through every proposal.

A detection's score and box come from one proposal's row of the RoI box head: the softmax
of its class logits and its decoded, clipped box. The heads run on every proposal the RPN
keeps (150 to 1,000), and with a graph the backward pass crosses the box head and the RoI
pooling of all of them, although only the detections' rows have a gradient. Inside
`rows_with_grad`, the RoI heads run without a graph; then each detection's row is computed
again from the same features, with one: the same values (the same operations on the same
inputs) and the same gradients, for a few rows instead of all of them. On
fasterrcnn_mobilenet_v3_large_320_fpn the heads are most of a forward pass
(`bench/detection.py` measures the gain).

Which proposal a detection came from is found by value: torchvision's post-processing
(score threshold, small boxes, NMS, top-k) keeps no index, but a detection's score and box
equal its proposal's softmax and decoded box for its label exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

HEADS = "roi_heads"


def has_rcnn_heads(module: nn.Module) -> bool:
    return isinstance(getattr(module, HEADS, None), RoIHeads)


@contextmanager
def rows_with_grad(module: nn.Module, layers: Sequence[str]) -> Iterator[None]:
    """While active (this thread only), a forward pass that reaches the RoI heads with grad
    enabled runs them without a graph and returns detections whose boxes and scores are
    recomputed with one. No effect on other models, or when a layer inside the heads is
    hooked (its output must stay in the graph)."""
    if not has_rcnn_heads(module) or any(n.split("#")[0].startswith(HEADS + ".") for n in layers):
        yield
        return
    heads: RoIHeads = getattr(module, HEADS)
    owner = threading.get_ident()
    state: dict[str, Any] = {}

    def before(_module: nn.Module, args: tuple) -> None:
        if threading.get_ident() == owner and torch.is_grad_enabled():
            state["args"] = args
            torch.set_grad_enabled(False)

    def predicted(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if threading.get_ident() == owner and "args" in state:
            state["predicted"] = output

    def after(_module: nn.Module, _args: tuple, output: Any) -> Any:
        if threading.get_ident() != owner or "args" not in state:
            return None
        args, (class_logits, box_regression) = state.pop("args"), state.pop("predicted")
        torch.set_grad_enabled(True)
        features, proposals, image_shapes = args[0], args[1], args[2]
        result, losses = output
        found = _recomputed(
            heads, features, proposals, image_shapes, result, class_logits, box_regression
        )
        return found, losses

    handles = [
        heads.register_forward_pre_hook(before),
        heads.box_predictor.register_forward_hook(predicted),
        heads.register_forward_hook(after),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        if state.pop("args", None) is not None:  # the pass failed inside the heads
            torch.set_grad_enabled(True)


def _recomputed(
    heads: RoIHeads,
    features: dict[str, torch.Tensor],
    proposals: list[torch.Tensor],
    image_shapes: list[tuple[int, int]],
    result: list[dict[str, torch.Tensor]],
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
) -> list[dict[str, torch.Tensor]]:
    counts = [p.shape[0] for p in proposals]
    all_boxes = heads.box_coder.decode(box_regression, proposals).split(counts)
    all_scores = F.softmax(class_logits, -1).split(counts)
    chosen = []
    for image, detected in enumerate(result):
        labels = detected["labels"]
        if labels.numel() == 0:
            chosen.append(proposals[image][:0])
            continue
        boxes = box_ops.clip_boxes_to_image(all_boxes[image], image_shapes[image])[:, labels]
        distance = (all_scores[image][:, labels] - detected["scores"]).abs() + (
            boxes - detected["boxes"]
        ).abs().sum(-1)  # [proposals, detections]; 0 at each detection's own proposal
        chosen.append(proposals[image][distance.argmin(dim=0)])
    # Every image's rows in one call: RoI pooling reads image i's features for list entry i.
    pooled = heads.box_roi_pool(features, chosen, image_shapes)
    logits, regression = heads.box_predictor(heads.box_head(pooled))
    decoded = heads.box_coder.decode(regression, chosen)  # [rows, classes, 4]
    probabilities = F.softmax(logits, -1)
    found, start = [], 0
    for image, detected in enumerate(result):
        labels = detected["labels"]
        rows = torch.arange(start, start + labels.numel(), device=labels.device)
        start += labels.numel()
        boxes = box_ops.clip_boxes_to_image(decoded[rows, labels], image_shapes[image])
        found.append({**detected, "boxes": boxes, "scores": probabilities[rows, labels]})
    return found
