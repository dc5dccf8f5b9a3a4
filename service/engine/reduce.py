"""Channel reductions: PCA to RGB, mean, sum, max."""

from __future__ import annotations

import numpy as np
import torch

from model_registry.errors import InvalidInput

REDUCTIONS = ("none", "pca", "mean", "sum", "max")


def check_reduce(reduce: str, *, selected: int, positions: int, layer: str) -> None:
    """PCA to 3 components needs at least 3 channels and 3 positions (as in scikit-learn)."""
    if reduce == "pca" and min(selected, positions) < 3:
        raise InvalidInput(
            f"reduce=pca needs at least 3 selected channels and 3 spatial positions; layer "
            f"'{layer}' gives {selected} channel(s) at {positions} position(s)",
            field="reduce",
            layer=layer,
        )


def reduce_channels(maps: torch.Tensor, reduce: str) -> torch.Tensor:
    """[B, k, H, W] -> [B, k, H, W] (none), [B, 3, H, W] (pca) or [B, 1, H, W]."""
    if reduce == "none":
        return maps
    if reduce == "mean":
        return maps.mean(dim=1, keepdim=True)
    if reduce == "sum":
        return maps.sum(dim=1, keepdim=True)
    if reduce == "max":
        return maps.amax(dim=1, keepdim=True)
    if reduce == "pca":
        return torch.stack([pca_rgb(m) for m in maps])
    raise ValueError(f"unknown reduction {reduce!r}")


def pca_rgb(maps: torch.Tensor) -> torch.Tensor:
    """The first 3 principal-component scores of one image's channels, as a [3, H, W] map.

    Positions are the samples and channels the features, as in
    `PCA(n_components=3).fit_transform(maps.reshape(k, -1).T)`. The components come from
    the eigenvectors of the k x k covariance (float64, numpy's LAPACK), which is cheaper than
    an SVD of the H*W x k data; signs follow scikit-learn's rule (largest |loading| positive).
    """
    k, height, width = maps.shape
    x = maps.reshape(k, -1).T.to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    covariance = x.T @ x / max(x.shape[0] - 1, 1)
    # LAPACK through numpy: torch.linalg.eigh of a 128 x 128 float64 matrix took 8x longer
    # on the 2-core CPU machine (170 ms against 22 ms, measured side by side under load).
    vectors = torch.from_numpy(np.linalg.eigh(covariance.cpu().numpy())[1]).to(x.device)
    components = vectors[:, -3:].flip(1)  # [k, 3], largest variance first
    biggest = components.abs().argmax(dim=0)
    signs = torch.sign(components[biggest, torch.arange(3)])
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    scores = x @ components
    return scores.T.reshape(3, height, width).to(maps.dtype)
