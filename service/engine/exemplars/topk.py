"""A running top-k per channel: what a dataset's exemplars keep instead of its activations,
and the merge of several slices' top-k lists into the one a single pass would keep."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from service.engine.partials import Partial


def _keep(
    values: torch.Tensor, indices: torch.Tensor, positions: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k largest per row [C, n]: a stable descending sort, so equal scores keep the
    order they arrive in (lower index first when they arrive in index order)."""
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, order), indices.gather(1, order), positions.gather(1, order)


class RunningTopK:
    """The k largest scores seen per channel, with the picture and map position of each.

    Memory is [C, k + batch] however many pictures pass. Pictures must arrive in ascending
    index order: each batch is appended after what is kept and a stable descending sort
    merges them, so equal scores stay ordered by lower index.
    """

    def __init__(self, channels: int, k: int, device: torch.device) -> None:
        self.k = k
        self.values = torch.empty(channels, 0, device=device)
        self.indices = torch.empty(channels, 0, dtype=torch.int64, device=device)
        self.positions = torch.empty(channels, 0, dtype=torch.int64, device=device)

    def add(self, scores: torch.Tensor, positions: torch.Tensor, indices: torch.Tensor) -> None:
        """Merge one batch: scores and flat map positions [B, C], dataset indices [B]."""
        batch = scores.shape[0]
        values = torch.cat([self.values, scores.float().T], dim=1)
        which = torch.cat([self.indices, indices.view(1, batch).expand(values.shape[0], -1)], 1)
        where = torch.cat([self.positions, positions.T], dim=1)
        self.values, self.indices, self.positions = _keep(values, which, where, self.k)

    def partial(self) -> Partial:
        """What is kept, as numpy: `values` float32, `indices` and flat `positions` int64,
        each [C, at most k], largest first."""
        return {
            "values": self.values.cpu().numpy().astype(np.float32),
            "indices": self.indices.cpu().numpy().astype(np.int64),
            "positions": self.positions.cpu().numpy().astype(np.int64),
        }


def merge(partials: Sequence[Partial], k: int) -> Partial:
    """The top-k of several slices' `partial()`s, given in slice order over ascending
    indices: exactly the lists one `RunningTopK` over every picture keeps.

    Each slice's list is already ordered (score descending, index ascending); appended in
    slice order, equal scores stand in ascending index order, and the same stable sort as
    `RunningTopK.add` keeps them so.
    """

    values = torch.cat([torch.as_tensor(p["values"], dtype=torch.float32) for p in partials], 1)
    indices = torch.cat([torch.as_tensor(p["indices"], dtype=torch.int64) for p in partials], 1)
    where = torch.cat([torch.as_tensor(p["positions"], dtype=torch.int64) for p in partials], 1)
    kept = _keep(values, indices, where, k)
    return {
        name: tensor.numpy()
        for name, tensor in zip(("values", "indices", "positions"), kept, strict=True)
    }


def score_maps(maps: torch.Tensor, score: str) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, C, H, W] -> each channel's score ('max' or 'mean' over positions) [B, C] and the
    flat position of its map's maximum (the first, row by row, among equal values) [B, C]."""
    flat = maps.flatten(2).float()
    positions = flat.argmax(dim=2)
    if score == "max":
        return flat.gather(2, positions.unsqueeze(2)).squeeze(2), positions
    return flat.mean(dim=2), positions
