"""Channel reductions: PCA to RGB, mean, sum, max."""

from __future__ import annotations

import numpy as np
import scipy.linalg

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


def reduce_channels(maps: np.ndarray, reduce: str) -> np.ndarray:
    """[B, k, H, W] -> [B, k, H, W] (none), [B, 3, H, W] (pca) or [B, 1, H, W] (numpy: this
    runs in the CPU pool, next to rendering)."""
    if reduce == "none":
        return maps
    if reduce == "mean":
        return maps.mean(axis=1, keepdims=True)
    if reduce == "sum":
        return maps.sum(axis=1, keepdims=True)
    if reduce == "max":
        return maps.max(axis=1, keepdims=True)
    if reduce == "pca":
        return np.stack([pca_rgb(m) for m in maps])
    raise ValueError(f"unknown reduction {reduce!r}")


def pca_rgb(maps: np.ndarray) -> np.ndarray:
    """The first 3 principal-component scores of one image's channels, as a [3, H, W] map.

    Positions are the samples and channels the features, as in
    `PCA(n_components=3).fit_transform(maps.reshape(k, -1).T)`. The components come from
    the eigenvectors of the k x k covariance (float64), which is cheaper than an SVD of the
    H*W x k data, and only the top three are computed (LAPACK's `syevr`, cheaper than all
    k of them); signs follow scikit-learn's rule (largest
    |loading| positive).
    """
    k, height, width = maps.shape
    x = maps.reshape(k, -1).T.astype(np.float64)
    x -= x.mean(axis=0, keepdims=True)
    covariance = x.T @ x / max(x.shape[0] - 1, 1)
    top = scipy.linalg.eigh(covariance, subset_by_index=[k - 3, k - 1], driver="evr")[1]
    components = top[:, ::-1]  # [k, 3], largest first
    biggest = np.abs(components).argmax(axis=0)
    signs = np.sign(components[biggest, np.arange(3)])
    components = components * np.where(signs == 0, 1.0, signs)
    return (x @ components).T.reshape(3, height, width).astype(maps.dtype)
