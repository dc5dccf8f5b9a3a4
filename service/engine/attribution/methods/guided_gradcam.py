"""Guided Grad-CAM: guided backprop times the Grad-CAM map (Selvaraju et al. 2017, sec. 3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.cam_pass import NEAREST, run_cam, unit_scale
from service.engine.attribution.gradients import gradients_with_logits
from service.engine.attribution.guided import GUIDED
from service.engine.attribution.layers import check_spatial_layers
from service.engine.attribution.methods import gradient_cams  # noqa: F401 - registers gradcam
from service.engine.attribution.methods.base import (
    CAMS,
    GradientInputs,
    GradientMethod,
    register,
)
from service.engine.attribution.target_objects import Target

_GRAD_CAM = CAMS["gradcam"]


@dataclass(frozen=True)
class GuidedGradCamOptions:
    """layer: the Grad-CAM layer (validate fills it in); upsample: 'nearest' or 'bilinear'."""

    layer: str | None
    upsample: str


@register
class GuidedGradCam(GradientMethod):
    """The Grad-CAM's ReLU'd values upsampled nearest, as Captum's GuidedGradCam, or
    bilinearly and scaled to [0, 1], as the paper's figures and pytorch-grad-cam's example."""

    name = "guided-gradcam"
    summary = "guided backprop times the Grad-CAM of one layer (layer, upsample)"
    listing_order = 40
    Options = GuidedGradCamOptions

    def validate(self, model: LoadedModel, layer: str | None) -> str | None:
        names = [name for name in (layer or "").split(",") if name.strip()]
        if len(names) > 1:
            raise InvalidInput("layer: guided-gradcam takes one layer", field="layer")
        return check_spatial_layers(model, [n.strip() for n in names])[0].name

    def compute(self, inputs: GradientInputs) -> tuple[Any, Target, torch.Tensor]:
        model, batch, options = inputs.model, inputs.batch, inputs.options
        layer = options.layer or model.catalog.last_spatial_layer().name  # validate sets it
        cam = run_cam(
            model,
            batch,
            _GRAD_CAM,
            (layer,),
            inputs.request,
            fixed_targets=inputs.fixed_targets,
            budget=inputs.budget,
            upsample=options.upsample,
        )
        _, _, guided = gradients_with_logits(
            model.module,
            batch,
            lambda _output, part: cam.target.select(part),
            rows=inputs.rows,
            relu_mode=GUIDED,
        )
        mask = cam.maps[layer] if options.upsample == NEAREST else unit_scale(cam.maps[layer])
        return cam.logits, cam.target, guided * mask[:, :, None]
