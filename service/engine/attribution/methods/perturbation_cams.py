"""The gradient-free CAMs that perturb and re-run the model (the passes are in `perturb`)."""

from __future__ import annotations

import torch

from service.engine.attribution.chunks import rows_per_chunk
from service.engine.attribution.methods.base import CamInputs, register_cam
from service.engine.attribution.methods.gradient_cams import channel_map
from service.engine.attribution.perturb import ablation_cam_weights, score_cam_weights
from service.engine.attribution.target_objects import batch_rows


def _rows(inputs: CamInputs) -> int:
    return rows_per_chunk(inputs.model, graph=False, budget=inputs.budget)


@register_cam("scorecam", "Score-CAM: channels mask the input; weights are the scores", order=70)
def score_cam(inputs: CamInputs) -> torch.Tensor:
    module, acts = inputs.model.module, inputs.activations
    weights = score_cam_weights(module, inputs.batch, acts, inputs.target, rows=_rows(inputs))
    return channel_map(weights, acts, eigen=inputs.eigen_smooth)


@register_cam("ablationcam", "Ablation-CAM: score drops when each channel is ablated", order=90)
def ablation_cam(inputs: CamInputs) -> torch.Tensor:
    weights = ablation_cam_weights(
        inputs.model.module,
        inputs.batch,
        layer=inputs.layer,
        calls=inputs.calls,
        output=inputs.output,
        layout=inputs.layout,
        targets=inputs.target,
        base_scores=inputs.target.scores(inputs.logits, batch_rows(inputs.target)),
        rows=_rows(inputs),
    )
    return channel_map(weights, inputs.activations, eigen=inputs.eigen_smooth)
