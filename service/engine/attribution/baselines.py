"""Reference inputs: integrated-gradients baselines, the insertion metric's blurred image."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model_registry.spec import ModelSpec

ZERO = "zero"
BLACK = "black"
BLUR = "blur"
BASELINES = (ZERO, BLACK, BLUR)


def blur_sigma(height: int, width: int) -> float:
    """Gaussian sigma in pixels: a tenth of the longer side (22.4 at 224, 3.2 at 32), at least 1.

    Strong enough that the blurred image no longer shows the object's shape at any input
    size, which is what a reference input (the insertion start, the IG baseline) is for.
    """
    return max(1.0, max(height, width) / 10)


def gaussian_blur(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W], kernel radius 3 sigma, reflected borders."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, batch.shape[-1] - 1, batch.shape[-2] - 1)
    if radius < 1:
        return batch.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=batch.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(batch.dtype)
    channels = batch.shape[1]
    padded = F.pad(batch, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def black(batch: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Pixel value 0 in every channel, normalized as the model expects."""
    mean = torch.tensor(spec.mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return ((0 - mean) / std).expand_as(batch).clone()


def baseline(batch: torch.Tensor, kind: str, spec: ModelSpec) -> torch.Tensor:
    """The integrated-gradients starting point for each image.

    - zero: the all-zero normalized input (Captum's default; the dataset-mean colour);
    - black: black pixels;
    - blur: the image under a strong Gaussian blur (`blur_sigma`), as in Sturmfels et al.
      2020, "Visualizing the Impact of Feature Attribution Baselines" (Distill).
    """
    if kind == ZERO:
        return torch.zeros_like(batch)
    if kind == BLACK:
        return black(batch, spec)
    if kind == BLUR:
        return gaussian_blur(batch, blur_sigma(*batch.shape[-2:]))
    raise ValueError(f"unknown baseline {kind!r}")
