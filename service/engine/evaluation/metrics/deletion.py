"""Deletion and insertion (Petsiuk et al. 2018, RISE), as the trust view computes them
(`attribution.faithfulness`): the area under the target's softmax probability (a region's
or box's score, `EvalBatch.score`) as pixels are removed (deletion, lower is better) or
put back (insertion, higher is better), most salient first. A map with channels (an
input-space attribution) ranks pixels by |values| summed over the channels, as
`/attributions` does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from service.engine.attribution.faithfulness import (
    DEFAULT_STEPS,
    DELETION,
    INSERTION,
    deletion_insertion,
)
from service.engine.attribution.plan import METRIC_STEPS
from service.engine.evaluation.metrics.base import (
    FAITHFULNESS,
    EvalBatch,
    Parameter,
    register_metric,
)
from service.engine.evaluation.metrics.prepare import pixel_saliency

STEPS = {
    "steps": Parameter(DEFAULT_STEPS, "points on the curve after the start", int, METRIC_STEPS)
}


def _auc(metric: str, batch: EvalBatch, steps: int) -> np.ndarray:
    saliency = torch.from_numpy(pixel_saliency(batch.maps)).to(batch.inputs.device)
    curves = deletion_insertion(
        batch.forward,  # any callable inputs -> logits serves as the module
        batch.inputs,
        saliency[:, None],
        batch.targets.to(batch.inputs.device).long().view(-1, 1),
        metrics=(metric,),
        steps=steps,
        rows=batch.rows,
        score=lambda inputs, images: batch.score(inputs, images, probability=True),
    )
    return curves.auc[metric][:, 0].double().cpu().numpy()


@register_metric(
    DELETION,
    family=FAITHFULNESS,
    reference="RISE (Petsiuk et al. 2018) deletion AUC, layerscope's trust view",
    higher_is_better=False,
    summary="area under the target probability as the most salient pixels are zeroed",
    parameters=STEPS,
)
def deletion(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    return _auc(DELETION, batch, parameters["steps"])


@register_metric(
    INSERTION,
    family=FAITHFULNESS,
    reference="RISE (Petsiuk et al. 2018) insertion AUC, layerscope's trust view",
    higher_is_better=True,
    summary="area under the target probability as the most salient pixels return to a blur",
    parameters=STEPS,
)
def insertion(batch: EvalBatch, parameters: Mapping[str, Any]) -> np.ndarray:
    return _auc(INSERTION, batch, parameters["steps"])
