"""Running statistics of one layer over a dataset, in memory that does not grow with the set.

Each batch's activation is reduced inside the forward hook and dropped: sums and sums of
squares (per channel, in float64), min and max, the channels ever above zero, and a
histogram. The histogram's edges are fixed by the first batch (its range widened by 10%
on each side, not below 0 when that batch has no negative value), or given (a sharded job
fixes them before its slices start, so that every slice bins alike); later values outside
them are counted into the end bins, and `clamped` says how many, so the counts always add
up to every value of the layer over the set. `state()` and `absorb()` carry a tally between
replicas: the slices' tallies add up to the tally of the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from service.engine.insight.stats import relu_like

BINS = 32
WIDEN = 0.1


@dataclass(frozen=True)
class LayerSummary:
    """One layer over the analysed images.

    Attributes:
        name, type: the layer and its module type.
        shape: the output shape per image, channels first.
        values: how many activation values were seen (shape size x images).
        sparsity: fraction of values <= 0.
        mean, std, min, max: over every value.
        dead_fraction: fraction of channels <= 0 at every position of every image; None
            unless the layer is ReLU-like (as in /stats: "never above zero" means nothing
            for a convolution before batch norm or for logits).
        dead_channels: the indices of those channels (empty when dead_fraction is None).
        edges: float64 [BINS + 1]; counts: int64 [BINS]; clamped: values below the first
            and above the last edge, included in the end bins.
    """

    name: str
    type: str
    shape: tuple[int, ...]
    values: int
    sparsity: float
    mean: float
    std: float
    min: float
    max: float
    dead_fraction: float | None
    dead_channels: tuple[int, ...]
    edges: np.ndarray
    counts: np.ndarray
    clamped: tuple[int, int]


class LayerTally:
    """Accumulates `add(values)` calls ([B, C, ...] channels-first, on any device)."""

    def __init__(
        self, name: str, layer_type: str, edges: tuple[float, float] | None = None
    ) -> None:
        self.name = name
        self.type = layer_type
        self.shape: tuple[int, ...] = ()
        self.count = 0
        self.nonpositive = 0
        self.sums: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None
        self.alive: torch.Tensor | None = None
        self.low = float("inf")
        self.high = float("-inf")
        self.edges = edges
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.below = 0
        self.above = 0

    def add(self, values: torch.Tensor) -> None:
        values = values.detach().float()
        if values.ndim == 1:
            values = values[:, None]
        dims = (0, *range(2, values.ndim))
        self.shape = tuple(values.shape[1:])
        self.count += values.numel()
        self.nonpositive += int((values <= 0).sum())
        # Per-channel sums in float32 (pairwise), accumulated across batches in float64;
        # vector_norm squares without a temporary the size of the activation.
        sums = values.sum(dim=dims).double().cpu()
        squares = torch.linalg.vector_norm(values, 2, dim=dims).double().cpu() ** 2
        alive = (values.amax(dim=dims) > 0).cpu()
        self.sums = sums if self.sums is None else self.sums + sums
        self.squares = squares if self.squares is None else self.squares + squares
        self.alive = alive if self.alive is None else self.alive | alive
        low, high = float(values.amin()), float(values.amax())
        self.low, self.high = min(self.low, low), max(self.high, high)
        if self.edges is None:
            self.edges = _edges(low, high)
        first, last = self.edges
        counts = torch.zeros(BINS, dtype=torch.int64)
        # histc counts in float32: exact only up to 2**24 per bin, so in slices that size.
        for part in values.reshape(-1).split(1 << 24):
            counts += torch.histc(part, bins=BINS, min=first, max=last).to(torch.int64).cpu()
        below, above = int((values < first).sum()), int((values > last).sum())
        counts[0] += below
        counts[-1] += above
        self.counts += counts.numpy()
        self.below += below
        self.above += above

    def state(self) -> dict[str, np.ndarray]:
        """Everything `absorb` needs, as arrays (empty ones when the layer never ran)."""
        empty = np.zeros(0)
        return {
            "shape": np.asarray(self.shape, dtype=np.int64),
            "count": np.asarray([self.count, self.nonpositive, self.below, self.above]),
            "range": np.asarray([self.low, self.high]),
            "sums": self.sums.numpy() if self.sums is not None else empty,
            "squares": self.squares.numpy() if self.squares is not None else empty,
            "alive": self.alive.numpy() if self.alive is not None else empty.astype(bool),
            "counts": self.counts,
        }

    def absorb(self, state: dict[str, np.ndarray]) -> None:
        """Add another tally's `state()` (same layer, same edges) to this one."""
        count, nonpositive, below, above = (int(v) for v in state["count"])
        if not count:
            return
        self.shape = tuple(int(v) for v in state["shape"])
        self.count += count
        self.nonpositive += nonpositive
        self.below += below
        self.above += above
        self.low = min(self.low, float(state["range"][0]))
        self.high = max(self.high, float(state["range"][1]))
        sums, squares = torch.from_numpy(state["sums"]), torch.from_numpy(state["squares"])
        alive = torch.from_numpy(state["alive"])
        self.sums = sums if self.sums is None else self.sums + sums
        self.squares = squares if self.squares is None else self.squares + squares
        self.alive = alive if self.alive is None else self.alive | alive
        self.counts = self.counts + state["counts"]

    def summary(self) -> LayerSummary | None:
        """The layer's figures, or None when it never ran."""
        if self.sums is None or self.squares is None or self.alive is None or not self.count:
            return None
        mean = float(self.sums.sum()) / self.count
        variance = max(float(self.squares.sum()) / self.count - mean * mean, 0.0)
        dead = (~self.alive).nonzero().flatten().tolist()
        is_relu = relu_like(self.type, self.low)
        first, last = self.edges or (0.0, 1.0)
        return LayerSummary(
            name=self.name,
            type=self.type,
            shape=self.shape,
            values=self.count,
            sparsity=self.nonpositive / self.count,
            mean=mean,
            std=float(np.sqrt(variance)),
            min=self.low,
            max=self.high,
            dead_fraction=len(dead) / len(self.alive) if is_relu else None,
            dead_channels=tuple(dead) if is_relu else (),
            edges=np.linspace(first, last, BINS + 1),
            counts=self.counts.copy(),
            clamped=(self.below, self.above),
        )


def first_edges(values: torch.Tensor) -> tuple[float, float]:
    """The edges a tally whose first batch is `values` fixes."""
    return _edges(float(values.amin()), float(values.amax()))


def _edges(low: float, high: float) -> tuple[float, float]:
    """The first batch's range, widened by WIDEN on each side (not below 0 from 0 up)."""
    span = high - low if high > low else max(abs(high), 1.0)
    first = low if low >= 0 else low - WIDEN * span
    return first, high + WIDEN * span
