"""KPCA-CAM (Karmani et al. 2024, https://arxiv.org/abs/2410.00267): EigenCAM with kernel
PCA, as pytorch-grad-cam's `KPCA_CAM` with its defaults (sigmoid kernel, gamma 1 / C)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import KernelPCA

from service.engine.attribution.methods.base import CamInputs, register_cam

KERNEL = "sigmoid"


def kernel_projection(activations: torch.Tensor) -> torch.Tensor:
    """The first kernel principal component of the centred activations [B, C, h, w] ->
    [B, h, w]; scikit-learn fixes the component's sign (`svd_flip`)."""
    batch, channels, height, width = activations.shape
    values = activations.detach().float().cpu().numpy().copy()
    values[np.isnan(values)] = 0
    projections = np.empty((batch, height * width), np.float32)
    for image in range(batch):
        x = values[image].reshape(channels, height * width).T
        x = x - x.mean(axis=0)
        projections[image] = KernelPCA(n_components=1, kernel=KERNEL).fit_transform(x)[:, 0]
    projection = torch.from_numpy(projections).to(activations.device, activations.dtype)
    return projection.reshape(batch, height, width)


@register_cam(
    "kpcacam",
    "KPCA-CAM: the activations' first kernel principal component (class-agnostic)",
    order=82,
)
def kpcacam(inputs: CamInputs) -> torch.Tensor:
    """Class-agnostic: every target of an image gets the same map; already a projection, so
    eigen_smooth leaves it as it is (as in pytorch-grad-cam)."""
    count, per_image = inputs.targets.shape
    return kernel_projection(inputs.activations)[:, None].expand(count, per_image, -1, -1)
