"""The noisy linear imputer of ROAD (Rong et al. 2022, https://arxiv.org/abs/2202.00449),
as pytorch-grad-cam's `NoisyLinearImputer`.

Each removed pixel becomes the weighted mean of its 8 neighbours (1/6 for the 4 direct ones,
1/12 for the diagonals; neighbours outside the image drop out), solved for all removed pixels
at once as one sparse linear system per image, plus `noise` times standard normal noise
(drawn from the caller's generator, so a seed fixes it). The system is built with vectorized
COO arrays instead of grad-cam's `lil_matrix` loop; the equations are the same.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve

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
    entries_row.append(np.arange(missing.size))
    entries_col.append(np.arange(missing.size))
    entries_value.append(-diagonal)
    system = csc_matrix(
        (np.concatenate(entries_value), (np.concatenate(entries_row), np.concatenate(entries_col))),
        shape=(missing.size, missing.size),
    )
    solved = np.asarray(spsolve(system, rhs)).reshape(missing.size, channels)
    filled = image.reshape(channels, -1).copy()
    values = torch.from_numpy(solved.T.astype(np.float32))
    if noise:
        values = values + noise * torch.randn(values.shape, generator=generator)
    filled[:, missing] = values.numpy()
    return filled.reshape(image.shape)
