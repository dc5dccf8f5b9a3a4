"""Drop and increase in confidence (Chattopadhay et al. 2018, Grad-CAM++), as
pytorch-grad-cam's `DropInConfidence` and `IncreaseInConfidence`.

The input (normalized) is multiplied by the map, read per pixel and min-max scaled to [0, 1]
per image as grad-cam scales its CAMs (a map in [0, 1] already is used as it is), and the
target's softmax probability is compared with the original's (grad-cam's
`ClassifierOutputSoftmaxTarget`; a region's or box's score as it is, `EvalBatch.score`):
- `drop-in-confidence`: max(0, before - after), lower is better;
- `increase-in-confidence`: 1 when after > before, else 0; its mean is the share of images
  whose confidence rose, higher is better.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from service.engine.evaluation.metrics.base import FAITHFULNESS, EvalBatch, register_metric
from service.engine.evaluation.metrics.passes import target_scores
from service.engine.evaluation.metrics.prepare import pixel_saliency, unit_range


def confidence_change(batch: EvalBatch) -> np.ndarray:
    """after - before, float32 [B], as grad-cam's `CamMultImageConfidenceChange`."""
    cams = torch.from_numpy(unit_range(pixel_saliency(batch.maps))).to(batch.inputs.device)
    images = batch.images()
    before = target_scores(batch, batch.inputs, images, softmax=True).astype(np.float32)
    masked = batch.inputs * cams[:, None].to(batch.inputs.dtype)
    after = target_scores(batch, masked, images, softmax=True).astype(np.float32)
    return after - before


@register_metric(
    "drop-in-confidence",
    family=FAITHFULNESS,
    reference="pytorch-grad-cam 1.5 DropInConfidence (Chattopadhay et al. 2018)",
    higher_is_better=False,
    summary="how much the target probability falls when the input is multiplied by the map",
)
def drop_in_confidence(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    return np.maximum(-confidence_change(batch), 0).astype(np.float64)


@register_metric(
    "increase-in-confidence",
    family=FAITHFULNESS,
    reference="pytorch-grad-cam 1.5 IncreaseInConfidence (Chattopadhay et al. 2018)",
    higher_is_better=True,
    summary="1 when the target probability rises as the input is multiplied by the map",
)
def increase_in_confidence(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    return (confidence_change(batch) > 0).astype(np.float64)
