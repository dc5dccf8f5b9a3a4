"""The gradient-based CAMs, with pytorch-grad-cam's epsilons so the maps agree with it.

Shapes: activations [B, C, h, w], gradients [B, T, C, h, w]; each returns [B, T, h, w].
"""

from __future__ import annotations

import torch

from service.engine.attribution.methods.registry import CamInputs, CamMethod, register


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_c weights[b, t, c] * activations[b, c] -> [B, T, h, w]."""
    return torch.einsum("btc,bchw->bthw", weights, activations)


def _parts(inputs: CamInputs) -> tuple[torch.Tensor, torch.Tensor]:
    if inputs.gradients is None:
        raise ValueError("a gradient CAM needs gradients")
    return inputs.activations, inputs.gradients


@register
class GradCam(CamMethod):
    """Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391: channel weights are the
    spatially averaged gradients."""

    name = "gradcam"
    summary = "Grad-CAM: activations weighted by their mean gradient"
    needs_gradients = True
    listing_order = 10

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        acts, grads = _parts(inputs)
        return weighted_sum(grads.mean(dim=(3, 4)), acts)


@register
class GradCamPlusPlus(CamMethod):
    """Chattopadhay et al. 2018, https://arxiv.org/abs/1710.11063, eq. 19: weights sum
    ReLU(gradients) times alpha = g^2 / (2 g^2 + sum(A) g^3)."""

    name = "gradcam++"
    summary = "Grad-CAM++: positive gradients weighted per position"
    needs_gradients = True
    listing_order = 20

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        acts, grads = _parts(inputs)
        grads_2 = grads.pow(2)
        grads_3 = grads_2 * grads
        sum_acts = acts[:, None].sum(dim=(3, 4), keepdim=True)
        alpha = grads_2 / (2 * grads_2 + sum_acts * grads_3 + 1e-6)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return weighted_sum((grads.clamp(min=0) * alpha).sum(dim=(3, 4)), acts)


@register
class XGradCam(CamMethod):
    """Fu et al. 2020, https://arxiv.org/abs/2008.02312: weights sum gradients * A / sum(A)."""

    name = "xgradcam"
    summary = "XGrad-CAM: gradients weighted by the normalized activations"
    needs_gradients = True
    listing_order = 30

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        acts, grads = _parts(inputs)
        expanded = acts[:, None]
        sum_acts = expanded.sum(dim=(3, 4), keepdim=True)
        return weighted_sum((grads * expanded / (sum_acts + 1e-7)).sum(dim=(3, 4)), acts)


@register
class LayerCam(CamMethod):
    """Jiang et al. 2021: no channel weights; sum_c ReLU(g) * A per position."""

    name = "layercam"
    summary = "LayerCAM: positive gradients times activations, per position"
    needs_gradients = True
    listing_order = 40

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        acts, grads = _parts(inputs)
        return (grads.clamp(min=0) * acts[:, None]).sum(dim=2)


@register
class HiResCam(CamMethod):
    """Draelos & Carin 2020, https://arxiv.org/abs/2011.08891: sum_c g * A."""

    name = "hirescam"
    summary = "HiResCAM: gradients times activations, per position"
    needs_gradients = True
    listing_order = 50

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        acts, grads = _parts(inputs)
        return (grads * acts[:, None]).sum(dim=2)
