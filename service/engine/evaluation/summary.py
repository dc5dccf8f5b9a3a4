"""A dataset evaluation summarised: per method and metric the mean, standard deviation and a
bootstrap interval, a ranking per metric and an overall mean rank, and the best and worst
pictures.

The interval is the percentile bootstrap (Efron & Tibshirani 1993, ch. 13): `RESAMPLES`
resamples of the n per-picture values with replacement, drawn with
`numpy.random.default_rng(seed)`, and the 2.5th and 97.5th percentiles of their means
(numpy's linear interpolation). Pictures where a metric has no value (no mask, a constant
map) are left out of that metric's n.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
EXTREMES = 3  # best and worst pictures listed per method and metric


@dataclass(frozen=True)
class Stat:
    """One method on one metric over the pictures it has a value for."""

    mean: float | None
    std: float | None
    ci95: tuple[float, float] | None
    n: int
    best: tuple[int, ...]
    worst: tuple[int, ...]


@dataclass(frozen=True)
class Ranking:
    """Methods best first on one metric (methods without a value left out)."""

    metric: str
    higher_is_better: bool
    order: tuple[str, ...]


def bootstrap(values: np.ndarray, *, seed: int, resamples: int = RESAMPLES) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of `values` (finite, n >= 1)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(resamples, values.size))
    means = values[draws].mean(axis=1)
    tail = (1.0 - LEVEL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def stat(values: np.ndarray, indices: Sequence[int], *, higher_is_better: bool, seed: int) -> Stat:
    """Mean, sample std (ddof 1), interval and extremes of one metric's per-picture values;
    `indices` are the dataset indices of the values."""
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    finite, where = values[keep], np.asarray(indices, dtype=np.int64)[keep]
    if finite.size == 0:
        return Stat(None, None, None, 0, (), ())
    order = np.argsort(-finite if higher_is_better else finite, kind="stable")
    count = min(EXTREMES, finite.size)
    return Stat(
        mean=float(finite.mean()),
        std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        ci95=bootstrap(finite, seed=seed),
        n=int(finite.size),
        best=tuple(int(i) for i in where[order[:count]]),
        worst=tuple(int(i) for i in where[order[::-1][:count]]),
    )


def rankings(
    stats: Mapping[str, Mapping[str, Stat]], better: Mapping[str, bool]
) -> tuple[list[Ranking], dict[str, float | None]]:
    """Per metric the methods ordered by mean (by `better[metric]`), and each method's mean
    rank (1 = best) over the metrics it has a value on."""
    ranks: dict[str, list[int]] = {method: [] for method in stats}
    found = []
    for metric, higher in better.items():
        scored = [(m, s[metric].mean) for m, s in stats.items() if s[metric].mean is not None]
        scored.sort(key=lambda pair: -pair[1] if higher else pair[1])
        order = tuple(method for method, _ in scored)
        for place, method in enumerate(order, start=1):
            ranks[method].append(place)
        found.append(Ranking(metric, higher, order))
    mean_rank = {m: (float(np.mean(r)) if r else None) for m, r in ranks.items()}
    return found, mean_rank


@dataclass(frozen=True)
class Summary:
    """Every method's `Stat` per metric, the rankings and each method's mean rank."""

    stats: dict[str, dict[str, Stat]]
    rankings: list[Ranking]
    mean_rank: dict[str, float | None]


def summarise(
    values: Mapping[str, Mapping[str, np.ndarray]],
    indices: Sequence[int],
    better: Mapping[str, bool],
    *,
    seed: int,
) -> Summary:
    """The summary of per-picture `values` (method -> metric -> [N]) at dataset `indices`;
    `better[metric]`: whether higher is better; every interval seeded by `seed`."""
    stats = {
        method: {
            metric: stat(found[metric], indices, higher_is_better=higher, seed=seed)
            for metric, higher in better.items()
        }
        for method, found in values.items()
    }
    ranked, mean_rank = rankings(stats, better)
    return Summary(stats, ranked, mean_rank)
