"""EigenCAM (Muhammad & Yeasin 2020, https://arxiv.org/abs/2008.00299)."""

from __future__ import annotations

import numpy as np
import torch

from service.engine.attribution.methods.base import CamInputs, register_cam


def eigen_cam(activations: torch.Tensor) -> torch.Tensor:
    """The projection of the centred activations [B, C, h, w] on their first principal
    component -> [B, h, w].

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


def eigen_maps(terms: torch.Tensor) -> torch.Tensor:
    """`eigen_cam` of every image and target: [B, T, C, h, w] -> [B, T, h, w].

    pytorch-grad-cam's `eigen_smooth` and EigenGradCAM project the per-channel terms of a
    map (weighted activations, gradients x activations) the way EigenCAM projects the
    activations; a target's map is its own SVD.
    """
    count, per_image = terms.shape[:2]
    return eigen_cam(terms.flatten(0, 1)).unflatten(0, (count, per_image))


@register_cam(
    "eigencam", "EigenCAM: the activations' first principal component (class-agnostic)", order=80
)
def eigencam(inputs: CamInputs) -> torch.Tensor:
    """Class-agnostic: every target of an image gets the same map."""
    count, per_image = inputs.targets.shape
    return eigen_cam(inputs.activations)[:, None].expand(count, per_image, -1, -1)
