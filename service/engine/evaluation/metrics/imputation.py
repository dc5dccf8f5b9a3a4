"""The noisy linear imputer of ROAD (Rong et al. 2022, https://arxiv.org/abs/2202.00449),
as pytorch-grad-cam's `NoisyLinearImputer`.

Each removed pixel becomes the weighted mean of its 8 neighbours (1/6 for the 4 direct ones,
1/12 for the diagonals; neighbours outside the image drop out), solved for all removed pixels
at once as one sparse linear system per image, plus `noise` times standard normal noise
(drawn from the caller's generator, so a seed fixes it). The system is built with vectorized
arrays instead of grad-cam's `lil_matrix` loop and solved by a banded LU for small images;
the equations are the same.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.linalg import LinAlgError, solve_banded
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import MatrixRankWarning, spsolve

NEIGHBOURS = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)


BANDED_UP_TO = 64  # half-bandwidth up to which LAPACK's banded LU beats SuperLU here


def _solve(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, diagonal: np.ndarray, rhs: np.ndarray
) -> np.ndarray:
    """Solve the system (off-diagonal COO entries plus `diagonal`) for `rhs` [N, C].

    Variables are numbered in pixel order, so an entry lies within a row's width of the
    diagonal: for small images a banded LU (O(N * band^2)) is a few times faster than SuperLU;
    larger ones go to SuperLU. A singular system (no known pixel at all, e.g. a constant map)
    gives NaN, as grad-cam's `spsolve` does.
    """
    count = diagonal.size
    offsets = rows - cols
    band = int(np.abs(offsets).max()) if offsets.size else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", MatrixRankWarning)
            if band <= BANDED_UP_TO:
                packed = np.zeros((2 * band + 1, count))
                packed[band] = diagonal
                packed[band + offsets, cols] = values
                return solve_banded((band, band), packed, rhs)
            system = csc_matrix(
                (
                    np.concatenate([values, diagonal]),
                    (
                        np.concatenate([rows, np.arange(count)]),
                        np.concatenate([cols, np.arange(count)]),
                    ),
                ),
                shape=(count, count),
            )
            return np.asarray(spsolve(system, rhs)).reshape(count, -1)
    except (LinAlgError, MatrixRankWarning):
        return np.full(rhs.shape, np.nan)


def impute(
    image: np.ndarray, keep: np.ndarray, *, noise: float, generator: torch.Generator
) -> np.ndarray:
    """`image` [C, H, W] with the pixels where `keep` [H, W] is False filled in."""
    channels, height, width = image.shape
    flat_keep = keep.reshape(-1)
    pixels = image.reshape(channels, -1).astype(np.float64)
    missing = np.flatnonzero(~flat_keep)
    if missing.size == 0:
        return image.copy()
    variable = np.zeros(flat_keep.size, dtype=np.int64)
    variable[missing] = np.arange(missing.size)
    rows_y, cols_x = missing // width, missing % width
    rhs = np.zeros((missing.size, channels))
    diagonal = np.ones(missing.size)
    entries_row, entries_col, entries_value = [], [], []
    for (dy, dx), weight in NEIGHBOURS:
        y, x = rows_y + dy, cols_x + dx
        inside = (y >= 0) & (x >= 0) & (y < height) & (x < width)
        diagonal[~inside] -= weight
        ids = np.flatnonzero(inside)
        where = y[inside] * width + x[inside]
        known = flat_keep[where]
        rhs[ids[known]] -= weight * pixels[:, where[known]].T
        entries_row.append(ids[~known])
        entries_col.append(variable[where[~known]])
        entries_value.append(np.full(int((~known).sum()), weight))
    solved = _solve(
        np.concatenate(entries_row),
        np.concatenate(entries_col),
        np.concatenate(entries_value),
        -diagonal,
        rhs,
    )
    filled = image.reshape(channels, -1).copy()
    values = torch.from_numpy(solved.T.astype(np.float32))
    if noise:
        values = values + noise * torch.randn(values.shape, generator=generator)
    filled[:, missing] = values.numpy()
    return filled.reshape(image.shape)
