"""The gradient-free CAMs that perturb and re-run the model (the passes are in `perturb`)."""

from __future__ import annotations

import torch

from service.engine.attribution.chunks import rows_per_chunk
from service.engine.attribution.methods.gradient_cams import weighted_sum
from service.engine.attribution.methods.registry import CamInputs, CamMethod, register
from service.engine.attribution.perturb import ablation_cam_weights, score_cam_weights


@register
class ScoreCam(CamMethod):
    name = "scorecam"
    summary = "Score-CAM: each channel masks the input; weights are the masked scores"
    listing_order = 70

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        rows = rows_per_chunk(inputs.model, graph=False, budget=inputs.budget)
        weights = score_cam_weights(
            inputs.model.module, inputs.batch, inputs.activations, inputs.targets, rows=rows
        )
        return weighted_sum(weights, inputs.activations)


@register
class AblationCam(CamMethod):
    name = "ablationcam"
    summary = "Ablation-CAM: weights are the score drops when each channel is ablated"
    listing_order = 90

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        rows = rows_per_chunk(inputs.model, graph=False, budget=inputs.budget)
        weights = ablation_cam_weights(
            inputs.model.module,
            inputs.batch,
            layer=inputs.layer,
            calls=inputs.calls,
            output=inputs.output,
            layout=inputs.layout,
            targets=inputs.targets,
            base_scores=inputs.logits.gather(1, inputs.targets),
            rows=rows,
        )
        return weighted_sum(weights, inputs.activations)
