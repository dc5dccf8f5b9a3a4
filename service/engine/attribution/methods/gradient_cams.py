"""The gradient-based CAMs, with pytorch-grad-cam's epsilons so the maps agree with it.

Each formula takes activations [B, C, h, w] and gradients [B, T, C, h, w] and returns the
terms of its map: channel weights [B, T, C], or per-position terms [B, T, C, h, w]; the map
is their sum over channels, or with `eigen_smooth` their first principal component
(`channel_map`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from service.engine.attribution.methods.base import CamInputs, register_cam
from service.engine.attribution.methods.eigencam import eigen_maps

Formula = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_c weights[b, t, c] * activations[b, c] -> [B, T, h, w]."""
    return torch.einsum("btc,bchw->bthw", weights, activations)


def channel_map(values: torch.Tensor, activations: torch.Tensor, *, eigen: bool) -> torch.Tensor:
    """A CAM from its terms -> [B, T, h, w].

    Args:
        values: channel weights [B, T, C] (they multiply `activations`) or per-position
            terms [B, T, C, h, w].
        activations: [B, C, h, w].
        eigen: pytorch-grad-cam's `eigen_smooth`: instead of the sum over channels, the
            projection of the weighted activations on their first principal component.
    """
    if values.ndim == 3 and not eigen:
        return weighted_sum(values, activations)
    terms = values[..., None, None] * activations[:, None] if values.ndim == 3 else values
    return eigen_maps(terms) if eigen else terms.sum(dim=2)


def gradient_cam(
    name: str, summary: str, *, order: int, projected: bool = False
) -> Callable[[Formula], Formula]:
    """Register `formula(activations, gradients)` (its terms, see above) as a CAM method
    that needs gradients; `projected`: always the principal component (EigenGradCAM)."""

    def wrap(formula: Formula) -> Formula:
        def compute(inputs: CamInputs) -> torch.Tensor:
            if inputs.gradients is None:
                raise ValueError(f"{name} needs the gradients of the layer")
            values = formula(inputs.activations, inputs.gradients)
            return channel_map(values, inputs.activations, eigen=projected or inputs.eigen_smooth)

        compute.__name__, compute.__doc__ = formula.__name__, formula.__doc__
        register_cam(name, summary, order=order, needs_gradients=True)(compute)
        return formula

    return wrap


@gradient_cam("gradcam", "Grad-CAM: activations weighted by their mean gradient", order=10)
def grad_cam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391: channel weights are the
    spatially averaged gradients."""
    return grads.mean(dim=(3, 4))


@gradient_cam("gradcam++", "Grad-CAM++: positive gradients weighted per position", order=20)
def grad_cam_plus_plus(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Chattopadhay et al. 2018, https://arxiv.org/abs/1710.11063, eq. 19: weights sum
    ReLU(gradients) times alpha = g^2 / (2 g^2 + sum(A) g^3)."""
    grads_2 = grads.pow(2)
    grads_3 = grads_2 * grads
    sum_acts = acts[:, None].sum(dim=(3, 4), keepdim=True)
    alpha = grads_2 / (2 * grads_2 + sum_acts * grads_3 + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (grads.clamp(min=0) * alpha).sum(dim=(3, 4))


@gradient_cam("xgradcam", "XGrad-CAM: gradients weighted by the normalized activations", order=30)
def x_grad_cam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Fu et al. 2020, https://arxiv.org/abs/2008.02312: weights sum gradients * A / sum(A)."""
    sum_acts = acts[:, None].sum(dim=(3, 4), keepdim=True)
    return (grads * acts[:, None] / (sum_acts + 1e-7)).sum(dim=(3, 4))


@gradient_cam("layercam", "LayerCAM: positive gradients times activations, per position", order=40)
def layer_cam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Jiang et al. 2021: no channel weights; sum_c ReLU(g) * A per position."""
    return grads.clamp(min=0) * acts[:, None]


@gradient_cam("hirescam", "HiResCAM: gradients times activations, per position", order=50)
def hires_cam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Draelos & Carin 2020, https://arxiv.org/abs/2011.08891: sum_c g * A."""
    return grads * acts[:, None]
