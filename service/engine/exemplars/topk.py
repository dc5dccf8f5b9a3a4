"""A running top-k per channel: what a dataset's exemplars keep instead of its activations."""

from __future__ import annotations

import torch


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
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = values.gather(1, order)
        self.indices = which.gather(1, order)
        self.positions = where.gather(1, order)


def score_maps(maps: torch.Tensor, score: str) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, C, H, W] -> each channel's score ('max' or 'mean' over positions) [B, C] and the
    flat position of its map's maximum (the first, row by row, among equal values) [B, C]."""
    flat = maps.flatten(2).float()
    positions = flat.argmax(dim=2)
    if score == "max":
        return flat.gather(2, positions.unsqueeze(2)).squeeze(2), positions
    return flat.mean(dim=2), positions
