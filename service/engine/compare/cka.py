"""Centered kernel alignment between the features of two layers over the same images.

Linear CKA (Kornblith et al. 2019, https://arxiv.org/abs/1905.00414) of features X [n, p]
and Y [n, q], columns centered, is ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F). With
`debiased` the HSIC estimates are the unbiased ones (Song et al. 2012), as Nguyen et al.
2021 (https://arxiv.org/abs/2010.15327) use them.

Two ways to get there:
- `StreamingCka` keeps only X^T X, Y^T Y, X^T Y and the column sums (float64), so memory
  does not grow with n: pool=mean, linear CKA.
- `gram_cka` takes the whole features (kept by the caller within a memory cap) and works on
  the n x n Gram matrices: debiased CKA, and pool=flatten where p is large and n small.
The products are torch float64 matrix products on the CPU (numpy's BLAS keeps its own
thread team, many times slower beside torch's on the device thread); the rest is numpy.
"""

from __future__ import annotations

import numpy as np
import torch


class StreamingCka:
    """Linear CKA between every layer of A and every layer of B, accumulated batch by batch.

    Args:
        widths_a: the feature width of each layer of A.
        widths_b: the feature width of each layer of B.
    """

    def __init__(self, widths_a: list[int], widths_b: list[int]) -> None:
        self.widths_a, self.widths_b = list(widths_a), list(widths_b)
        self.count = 0
        self._self_a = [np.zeros((w, w)) for w in widths_a]
        self._self_b = [np.zeros((w, w)) for w in widths_b]
        self._sum_a = np.zeros(sum(widths_a))
        self._sum_b = np.zeros(sum(widths_b))
        self._cross = np.zeros((sum(widths_a), sum(widths_b)))

    @staticmethod
    def bytes_needed(widths_a: list[int], widths_b: list[int]) -> int:
        """The float64 bytes the accumulators hold."""
        squares = sum(w * w for w in widths_a) + sum(w * w for w in widths_b)
        return 8 * (squares + sum(widths_a) * sum(widths_b) + sum(widths_a) + sum(widths_b))

    def add(self, features_a: list[np.ndarray], features_b: list[np.ndarray]) -> None:
        """One batch: per layer, the features [b, width] of the same b images, in order."""
        joined_a = _float64(np.concatenate(features_a, axis=1))
        joined_b = _float64(np.concatenate(features_b, axis=1))
        self.count += joined_a.shape[0]
        self._sum_a += joined_a.sum(dim=0).numpy()
        self._sum_b += joined_b.sum(dim=0).numpy()
        self._cross += (joined_a.T @ joined_b).numpy()
        for grams, features in ((self._self_a, features_a), (self._self_b, features_b)):
            for gram, values in zip(grams, features, strict=True):
                block = _float64(values)
                gram += (block.T @ block).numpy()

    def state(self) -> dict[str, np.ndarray]:
        """The accumulators as named float64 arrays (`count` as a 0-d int64): what a shard
        of the pictures hands on, to be added by `add_state` where the shards meet."""
        state: dict[str, np.ndarray] = {"cka.count": np.asarray(self.count, dtype=np.int64)}
        state.update({f"cka.self_a.{i}": g for i, g in enumerate(self._self_a)})
        state.update({f"cka.self_b.{j}": g for j, g in enumerate(self._self_b)})
        state.update({"cka.sum_a": self._sum_a, "cka.sum_b": self._sum_b})
        state["cka.cross"] = self._cross
        return state

    def add_state(self, state: dict[str, np.ndarray]) -> None:
        """Another `StreamingCka`'s `state` (other pictures, the same layers) added in: the
        accumulators are sums over pictures, so the shards' sums are the whole's."""
        self.count += int(state["cka.count"])
        for i, gram in enumerate(self._self_a):
            gram += state[f"cka.self_a.{i}"]
        for j, gram in enumerate(self._self_b):
            gram += state[f"cka.self_b.{j}"]
        self._sum_a += state["cka.sum_a"]
        self._sum_b += state["cka.sum_b"]
        self._cross += state["cka.cross"]

    def matrix(self) -> np.ndarray:
        """float64 [layers_a, layers_b]; NaN where a layer's features are constant."""
        n = max(self.count, 1)
        mean_a, mean_b = self._sum_a / n, self._sum_b / n
        # Centered products: X_c^T Y_c = X^T Y - n mean_x mean_y^T.
        cross = self._cross - n * np.outer(mean_a, mean_b)
        starts_a, starts_b = _starts(self.widths_a), _starts(self.widths_b)
        norms_a = [
            _centered_norm(g, mean_a[s : s + w], n)
            for g, s, w in zip(self._self_a, starts_a, self.widths_a, strict=True)
        ]
        norms_b = [
            _centered_norm(g, mean_b[s : s + w], n)
            for g, s, w in zip(self._self_b, starts_b, self.widths_b, strict=True)
        ]
        out = np.empty((len(self.widths_a), len(self.widths_b)))
        for i, (sa, wa) in enumerate(zip(starts_a, self.widths_a, strict=True)):
            for j, (sb, wb) in enumerate(zip(starts_b, self.widths_b, strict=True)):
                block = cross[sa : sa + wa, sb : sb + wb]
                out[i, j] = _ratio(float(np.sum(block * block)), norms_a[i] * norms_b[j])
        return out


def _float64(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values)).to(torch.float64)


def _starts(widths: list[int]) -> list[int]:
    return [int(s) for s in np.cumsum([0, *widths[:-1]])]


def _centered_norm(gram: np.ndarray, mean: np.ndarray, n: int) -> float:
    return float(np.linalg.norm(gram - n * np.outer(mean, mean)))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def gram(features: np.ndarray) -> np.ndarray:
    """The linear kernel K = X X^T [n, n] of features [n, ...], in float64."""
    flat = _float64(features.reshape(features.shape[0], -1))
    return (flat @ flat.T).numpy()


def hsic(k: np.ndarray, l: np.ndarray, *, debiased: bool) -> float:  # noqa: E741
    """HSIC of two Gram matrices up to a factor that cancels in CKA: tr(K H L H) for the
    biased estimate, Song et al.'s unbiased estimate with `debiased` (n > 3)."""
    n = k.shape[0]
    if not debiased:
        kc = k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()
        return float(np.sum(kc * l))  # tr(HKH L) = <HKH, L> for symmetric L
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    ones_k, ones_l = kt.sum(axis=0), lt.sum(axis=0)
    value = (
        float(np.sum(kt * lt))
        + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * float(ones_k @ ones_l)
    )
    return value / (n * (n - 3))


def gram_cka(grams_a: list[np.ndarray], grams_b: list[np.ndarray], *, debiased: bool) -> np.ndarray:
    """CKA [layers_a, layers_b] from each layer's Gram matrix over the same n images."""
    self_a = [hsic(k, k, debiased=debiased) for k in grams_a]
    self_b = [hsic(k, k, debiased=debiased) for k in grams_b]
    out = np.empty((len(grams_a), len(grams_b)))
    for i, k in enumerate(grams_a):
        for j, l in enumerate(grams_b):  # noqa: E741
            scale = self_a[i] * self_b[j]
            out[i, j] = (
                hsic(k, l, debiased=debiased) / np.sqrt(scale) if scale > 0 else float("nan")
            )
    return out
