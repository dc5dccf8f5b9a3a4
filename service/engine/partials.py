"""A shard's partial result: named numpy arrays, stored as bytes between replicas.

A dataset job split into shards (`service.jobs.shards`) returns one `Partial` per shard and
merges them at the end. Arrays only (scalars as 0-d arrays, names as unicode arrays), saved
with `numpy.savez` and read back with `allow_pickle=False`, so a partial read from Redis can
never run code. The helpers below are the merges most jobs need.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

Partial = dict[str, np.ndarray]


def pack(partial: Partial) -> bytes:
    """The partial as bytes (an uncompressed .npz)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in partial.items()})
    return buffer.getvalue()


def unpack(blob: bytes) -> Partial:
    with np.load(io.BytesIO(blob), allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}


def concat(partials: Sequence[Partial], name: str, *, empty: np.ndarray) -> np.ndarray:
    """The `name` arrays of every partial, in shard order, along their first axis (`empty`
    when no shard has any)."""
    parts = [p[name] for p in partials if name in p and len(p[name])]
    return np.concatenate(parts) if parts else empty


def total(partials: Sequence[Partial], name: str) -> np.ndarray:
    """The sum of the `name` arrays of every partial (they share one shape)."""
    return np.sum([p[name] for p in partials], axis=0)
