"""Scores of coalitions: inputs that keep some features of a mask and replace the rest.

A coalition is a row z in {0, 1}^K over the K features of an image's mask; its input is
baseline + (x - baseline) * z[feature of the pixel]. Rows are batched `per_pass` at a time
and every target reuses the same passes. The sampling estimators (`sampling`) choose the
rows. Each distinct row runs once (KernelSHAP's Shapley kernel draws the 2K coalitions of
one or K-1 features most often, so its samples repeat), and the row that keeps every
feature reads the score of the image itself when the caller has it (`full`).
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
    full: torch.Tensor | None = None  # float64 [T]: the target scores of x itself, if known

    def scores(self, keep: torch.Tensor) -> torch.Tensor:
        """Target scores float64 [S, T] of the coalitions `keep` (bool or 0/1 [S, K])."""
        distinct, inverse = torch.unique(keep.bool().cpu(), dim=0, return_inverse=True)
        known = torch.zeros(distinct.shape[0], dtype=torch.bool)
        if self.full is not None:
            known = distinct.all(dim=1)
        values = torch.zeros(distinct.shape[0], self.target.count, dtype=torch.float64)
        values[known] = self.full.double().cpu() if self.full is not None else 0.0
        todo = (~known).nonzero()[:, 0]
        for first in range(0, todo.numel(), self.per_pass):
            chosen = todo[first : first + self.per_pass]
            rows = distinct[chosen].to(self.x.device, self.x.dtype)
            pixels = rows[:, self.position][:, None]  # [n, 1, H, W]
            inputs = channels_last(self.reference + (self.x - self.reference) * pixels)
            with torch.inference_mode():
                which = torch.full((rows.shape[0],), self.image, device=self.x.device)
                values[chosen] = self.target.scores(self.module(inputs), which).double().cpu()
            self.done += chosen.numel()
            report(min(self.done, self.total), self.total)
        self.done += keep.shape[0] - todo.numel()  # rows answered without a pass of their own
        report(min(self.done, self.total), self.total)
        return values[inverse].to(self.x.device)


def feature_positions(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the feature ids of a mask [H, W] in increasing order, each pixel's index among them)."""
    ids = torch.unique(features)
    return ids, torch.searchsorted(ids, features)


def spread(values: torch.Tensor, position: torch.Tensor, channels: int) -> torch.Tensor:
    """Per-feature values [K, T] -> per-pixel [T, C, H, W] (every channel alike)."""
    per_pixel = values.T[:, position]  # [T, H, W]
    return per_pixel[:, None].expand(-1, channels, -1, -1)
