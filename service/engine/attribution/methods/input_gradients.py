"""Plain input gradients and their ReLU variants: one forward and one backward pass."""

from __future__ import annotations

from typing import ClassVar

import torch

from service.engine.attribution.gradients import gradients_with_logits
from service.engine.attribution.guided import DECONV, GUIDED
from service.engine.attribution.methods.registry import GradientInputs, GradientMethod, register


class _InputGradient(GradientMethod):
    relu_mode: ClassVar[str | None] = None

    def compute(self, inputs: GradientInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return gradients_with_logits(
            inputs.model.module,
            inputs.batch,
            inputs.choose,
            rows=inputs.rows,
            relu_mode=self.relu_mode,
        )


@register
class Vanilla(_InputGradient):
    """Simonyan et al. 2013, https://arxiv.org/abs/1312.6034."""

    name = "vanilla"
    summary = "the gradient of the target logit w.r.t. the input"
    listing_order = 10


@register
class GuidedBackprop(_InputGradient):
    """Springenberg et al. 2014, https://arxiv.org/abs/1412.6806: ReLUs pass only positive
    gradients where the input was positive."""

    name = "guided-backprop"
    summary = "guided backpropagation: positive gradients through positive ReLU inputs"
    listing_order = 20
    relu_mode = GUIDED


@register
class Deconvnet(_InputGradient):
    """Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901: ReLUs apply to the gradient."""

    name = "deconvnet"
    summary = "deconvnet: ReLU applied to the backward signal"
    listing_order = 30
    relu_mode = DECONV


@register
class InputXGradient(_InputGradient):
    """Shrikumar et al. 2016, https://arxiv.org/abs/1605.01713."""

    name = "input-x-gradient"
    summary = "the input times its gradient"
    listing_order = 50

    def compute(self, inputs: GradientInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, targets, values = super().compute(inputs)
        return logits, targets, inputs.batch[:, None] * values
