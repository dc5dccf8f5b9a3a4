"""How the metrics read maps: per-pixel saliency, Quantus's normalisation, grad-cam's scaling.

Quantus's `normalise_by_max` divides the whole batch by its largest |value|; here each image
is divided by its own, so an image's score never depends on its batch-mates. The metrics
compared with Quantus (Gini index, entropy, mass and rank ratios, Pearson and Spearman
correlations, argmax) are unchanged by that scale up to Quantus's 1e-7 and 1e-12 epsilons.
"""

from __future__ import annotations

import numpy as np


def pixel_saliency(maps: np.ndarray) -> np.ndarray:
    """[B, A, H, W] -> [B, H, W]: the map itself (A = 1), or |values| summed over channels
    (an input-space attribution, as `/attributions` ranks its pixels)."""
    if maps.shape[1] == 1:
        return maps[:, 0]
    return np.abs(maps).sum(axis=1)


def normalise_by_max(maps: np.ndarray) -> np.ndarray:
    """Each image divided by its largest |value| (Quantus's default `normalise_func`); an
    all-zero image is left as it is."""
    flat = maps.reshape(maps.shape[0], -1).astype(np.float64)
    peak = np.abs(flat).max(axis=1, keepdims=True)
    peak[peak == 0] = 1.0
    return (flat / peak).reshape(maps.shape)


def flat_abs(maps: np.ndarray) -> np.ndarray:
    """[B, ...] -> [B, N]: |value| / max |value| per image, flattened (Quantus's defaults
    for the complexity and randomisation metrics: normalise by max, then abs)."""
    return np.abs(normalise_by_max(np.asarray(maps))).reshape(maps.shape[0], -1)


def scale_cam(maps: np.ndarray) -> np.ndarray:
    """[B, H, W] min-max scaled per image as pytorch-grad-cam's `scale_cam_image`:
    (x - min) / (1e-7 + max - min), in float32."""
    flat = maps.reshape(maps.shape[0], -1).astype(np.float32)
    flat = flat - flat.min(axis=1, keepdims=True)
    flat = flat / (1e-7 + flat.max(axis=1, keepdims=True))
    return flat.reshape(maps.shape)


def unit_range(maps: np.ndarray) -> np.ndarray:
    """[B, H, W] float32 in [0, 1]: each image as it is when it is, else min-max scaled."""
    maps = maps.astype(np.float32)
    flat = maps.reshape(maps.shape[0], -1)
    inside = (flat.min(axis=1) >= 0) & (flat.max(axis=1) <= 1)
    return np.where(inside[:, None, None], maps, scale_cam(maps))
