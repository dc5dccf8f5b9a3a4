"""The CAMs that keep gradients x activations per position: EigenGradCAM and Grad-CAM
element-wise, as pytorch-grad-cam defines them (its `EigenGradCAM`, `GradCAMElementWise`)."""

from __future__ import annotations

import torch

from service.engine.attribution.methods.gradient_cams import gradient_cam


@gradient_cam(
    "gradcam-elementwise",
    "Grad-CAM element-wise: positive gradients x activations, per position and channel",
    order=45,
)
def grad_cam_elementwise(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """sum_c ReLU(g * A): LayerCAM with the ReLU after the product, not on the gradient."""
    return (grads * acts[:, None]).clamp(min=0)


@gradient_cam(
    "eigengradcam",
    "EigenGradCAM: the first principal component of gradients x activations",
    order=85,
    projected=True,
)
def eigen_grad_cam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """EigenCAM (https://arxiv.org/abs/2008.00299) of g * A instead of A, so class-specific;
    the principal component's sign is LAPACK's, as in pytorch-grad-cam (see `eigen_cam`)."""
    return grads * acts[:, None]
