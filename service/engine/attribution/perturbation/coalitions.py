"""Scores of coalitions: inputs that keep some features of a mask and replace the rest.

A coalition is a row z in {0, 1}^K over the K features of an image's mask; its input is
baseline + (x - baseline) * z[feature of the pixel]. Rows are batched `per_pass` at a time
and every target reuses the same passes. The sampling estimators (`sampling`) choose the
rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from service.engine.attribution.perturbation.ablation import channels_last
from service.engine.attribution.target_objects import Target
from service.engine.progress import report


@dataclass
class Coalitions:
    """One image's inputs, mask and target, and a counter of passes for progress."""

    module: nn.Module
    x: torch.Tensor  # [1, C, H, W]
    reference: torch.Tensor  # [1, C, H, W]
    position: torch.Tensor  # int64 [H, W]: each pixel's feature, 0..K-1
    features: int
    target: Target
    image: int
    per_pass: int
    done: int = 0
    total: int = 1

    def scores(self, keep: torch.Tensor) -> torch.Tensor:
        """Target scores float64 [S, T] of the coalitions `keep` (bool or 0/1 [S, K])."""
        out = [torch.zeros(0, self.target.count, dtype=torch.float64, device=self.x.device)]
        for first in range(0, keep.shape[0], self.per_pass):
            rows = keep[first : first + self.per_pass].to(self.x.device, self.x.dtype)
            pixels = rows[:, self.position][:, None]  # [n, 1, H, W]
            inputs = channels_last(self.reference + (self.x - self.reference) * pixels)
            with torch.inference_mode():
                which = torch.full((rows.shape[0],), self.image, device=self.x.device)
                out.append(self.target.scores(self.module(inputs), which).double())
            self.done += rows.shape[0]
            report(min(self.done, self.total), self.total)
        return torch.cat(out)


def feature_positions(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the feature ids of a mask [H, W] in increasing order, each pixel's index among them)."""
    ids = torch.unique(features)
    return ids, torch.searchsorted(ids, features)


def spread(values: torch.Tensor, position: torch.Tensor, channels: int) -> torch.Tensor:
    """Per-feature values [K, T] -> per-pixel [T, C, H, W] (every channel alike)."""
    per_pixel = values.T[:, position]  # [T, H, W]
    return per_pixel[:, None].expand(-1, channels, -1, -1)
