"""Class activation maps from a layer's activations (and gradients): the formulas.

Shapes: activations [B, C, h, w], gradients [B, T, C, h, w] (T targets); every function
returns [B, T, h, w] before the final ReLU. The formulas follow the papers as
pytorch-grad-cam (jacobgil/pytorch-grad-cam) computes them, epsilons included, so the
maps agree with it to float precision.
"""

from __future__ import annotations

import numpy as np
import torch

GRADCAM = "gradcam"
GRADCAM_PP = "gradcam++"
XGRADCAM = "xgradcam"
LAYERCAM = "layercam"
HIRESCAM = "hirescam"
CAM = "cam"
SCORECAM = "scorecam"
EIGENCAM = "eigencam"
ABLATIONCAM = "ablationcam"

GRADIENT_METHODS = (GRADCAM, GRADCAM_PP, XGRADCAM, LAYERCAM, HIRESCAM)
CAM_METHODS = (*GRADIENT_METHODS, CAM, SCORECAM, EIGENCAM, ABLATIONCAM)


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_c weights[b, t, c] * activations[b, c] -> [B, T, h, w]."""
    return torch.einsum("btc,bchw->bthw", weights, activations)


def gradient_cam(method: str, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """The gradient-based CAMs.

    - gradcam (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391): channel weights
      are the spatially averaged gradients.
    - gradcam++ (Chattopadhay et al. 2018, https://arxiv.org/abs/1710.11063, eq. 19):
      weights sum ReLU(gradients) times alpha = g^2 / (2 g^2 + sum(A) g^3).
    - xgradcam (Fu et al. 2020, https://arxiv.org/abs/2008.02312): weights sum
      gradients * A / sum(A).
    - layercam (Jiang et al. 2021): no channel weights; sum_c ReLU(g) * A per position.
    - hirescam (Draelos & Carin 2020, https://arxiv.org/abs/2011.08891): sum_c g * A.
    """
    acts = activations[:, None]  # [B, 1, C, h, w]
    if method == GRADCAM:
        return weighted_sum(grads.mean(dim=(3, 4)), activations)
    if method == GRADCAM_PP:
        grads_2 = grads.pow(2)
        grads_3 = grads_2 * grads
        sum_acts = acts.sum(dim=(3, 4), keepdim=True)
        alpha = grads_2 / (2 * grads_2 + sum_acts * grads_3 + 1e-6)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return weighted_sum((grads.clamp(min=0) * alpha).sum(dim=(3, 4)), activations)
    if method == XGRADCAM:
        sum_acts = acts.sum(dim=(3, 4), keepdim=True)
        return weighted_sum((grads * acts / (sum_acts + 1e-7)).sum(dim=(3, 4)), activations)
    if method == LAYERCAM:
        return (grads.clamp(min=0) * acts).sum(dim=2)
    if method == HIRESCAM:
        return (grads * acts).sum(dim=2)
    raise ValueError(f"not a gradient CAM method: {method!r}")


def class_activation_map(
    activations: torch.Tensor, classifier_weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150): the final linear layer's
    weights of the target class over the maps that global average pooling feeds it.

    Args:
        classifier_weight: [classes, C] of that linear layer.
        targets: int64 [B, T].
    """
    return weighted_sum(classifier_weight[targets].to(activations.dtype), activations)


def eigen_cam(activations: torch.Tensor) -> torch.Tensor:
    """EigenCAM (Muhammad & Yeasin 2020, https://arxiv.org/abs/2008.00299): the projection of
    the centred activations [B, C, h, w] on their first principal component -> [B, h, w].

    A principal component has no sign of its own. pytorch-grad-cam's `EigenCAM` takes the
    one LAPACK's SVD returns, and so does this (numpy's `svd` in float32 on the same
    [positions, C] matrix), so the maps agree with it, sign included; the thin SVD gives
    the same first vector as its full one at a fraction of the cost.
    """
    batch, channels, height, width = activations.shape
    values = activations.detach().float().cpu().numpy().copy()
    values[np.isnan(values)] = 0
    projections = np.empty((batch, height * width), np.float32)
    for image in range(batch):
        x = values[image].reshape(channels, height * width).T
        x = x - x.mean(axis=0)  # centred per channel
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        projections[image] = x @ vt[0]
    projection = torch.from_numpy(projections).to(activations.device, activations.dtype)
    return projection.reshape(batch, height, width)
