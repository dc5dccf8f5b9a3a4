"""Plain input gradients and their ReLU variants: one forward and one backward pass."""

from __future__ import annotations

from typing import Any

import torch

from service.engine.attribution.gradients import gradients_with_logits
from service.engine.attribution.guided import DECONV, GUIDED
from service.engine.attribution.methods.base import GradientInputs, register_gradient
from service.engine.attribution.target_objects import Target

Maps = tuple[Any, Target, torch.Tensor]


def _gradients(inputs: GradientInputs, relu_mode: str | None = None) -> Maps:
    module, batch = inputs.model.module, inputs.batch
    return gradients_with_logits(
        module, batch, inputs.choose, rows=inputs.rows, relu_mode=relu_mode
    )


@register_gradient("vanilla", "the gradient of the target logit w.r.t. the input", order=10)
def vanilla(inputs: GradientInputs) -> Maps:
    """Simonyan et al. 2013, https://arxiv.org/abs/1312.6034."""
    return _gradients(inputs)


@register_gradient(
    "guided-backprop",
    "guided backpropagation: positive gradients through positive ReLU inputs",
    order=20,
)
def guided_backprop(inputs: GradientInputs) -> Maps:
    """Springenberg et al. 2014, https://arxiv.org/abs/1412.6806: ReLUs pass only positive
    gradients where the input was positive."""
    return _gradients(inputs, GUIDED)


@register_gradient("deconvnet", "deconvnet: ReLU applied to the backward signal", order=30)
def deconvnet(inputs: GradientInputs) -> Maps:
    """Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901: ReLUs apply to the gradient."""
    return _gradients(inputs, DECONV)


@register_gradient("input-x-gradient", "the input times its gradient", order=50)
def input_x_gradient(inputs: GradientInputs) -> Maps:
    """Shrikumar et al. 2016, https://arxiv.org/abs/1605.01713."""
    logits, targets, values = _gradients(inputs)
    return logits, targets, inputs.batch[:, None] * values
