"""The parts a perturbation method replaces: occlusion windows and feature masks.

A feature mask gives every pixel of the model input a feature id, the same for all
channels. `grid:N` cuts the input into N x N blocks, pixel (y, x) in block
floor(y N / H) N + floor(x N / W); `slic:N` is scikit-image's SLIC superpixels with
`n_segments=N` on the de-normalized input (see `slic_mask`).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from model_registry.errors import InvalidInput

GRID = "grid"
SLIC = "slic"
_MASK = re.compile(r"^(grid|slic):(\d{1,6})$")
# scikit-image slic parameters (README): compactness 10, sigma 1, start_label 0.
SLIC_COMPACTNESS = 10.0
SLIC_SIGMA = 1.0


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Where Captum's Occlusion puts a window along one side: every `stride` pixels, and
    once more past the last full position (ceil), where the window is cut at the edge."""
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


def occlusion_windows(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(y, x) corners of every window in Captum's order (y fastest)."""
    ys, xs = window_starts(height, window, stride), window_starts(width, window, stride)
    return [(y, x) for x in xs for y in ys]


def window_masks(
    corners: list[tuple[int, int]], window: int, height: int, width: int, device: torch.device
) -> torch.Tensor:
    """Boolean [n, H, W]: each window's pixels (cut at the image's edge)."""
    masks = torch.zeros(len(corners), height, width, dtype=torch.bool, device=device)
    for k, (y, x) in enumerate(corners):
        masks[k, y : y + window, x : x + window] = True
    return masks


def parse_mask(value: str, height: int, width: int) -> tuple[str, int]:
    """'grid:N' or 'slic:N' -> (kind, N); a 422 naming `mask` otherwise, or when the mask
    would have more segments than the input has pixels."""
    found = _MASK.match(value.strip())
    if found is None:
        raise InvalidInput(
            f"mask: '{value}' is not grid:N or slic:N", field="mask", choices=["grid:N", "slic:N"]
        )
    kind, number = found.group(1), int(found.group(2))
    segments = number * number if kind == GRID else number
    if number < 1 or segments > height * width:
        raise InvalidInput(
            f"mask: {value} asks for {segments} segments; the {height}x{width} input has "
            f"{height * width} pixels",
            field="mask",
            valid_range=[1, height * width],
        )
    return kind, number


def grid_mask(height: int, width: int, blocks: int) -> torch.Tensor:
    """int64 [H, W]: pixel (y, x) in block floor(y N / H) N + floor(x N / W)."""
    rows = torch.arange(height) * blocks // height
    cols = torch.arange(width) * blocks // width
    return rows[:, None] * blocks + cols[None, :]


def slic_mask(pixels: np.ndarray, segments: int) -> torch.Tensor:
    """int64 [H, W]: scikit-image SLIC superpixels of float [H, W, C] pixels in [0, 1].

    slic(image, n_segments=N, compactness=10, sigma=1, start_label=0), on the de-normalized
    model input (one-channel inputs as a grey image, channel_axis=None).
    """
    from skimage.segmentation import slic  # scikit-image: imported when a slic mask is asked

    image = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    labels = slic(
        image,
        n_segments=segments,
        compactness=SLIC_COMPACTNESS,
        sigma=SLIC_SIGMA,
        start_label=0,
        channel_axis=None if image.ndim == 2 else -1,
    )
    return torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
