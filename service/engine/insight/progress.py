"""Progress reporting and cooperative cancellation for long computations.

The engine calls `progress(step, total)` after each step. The caller decides what that
means: a job updates its progress and raises `Cancelled` when the client deleted it or its
time ran out. Nothing is interrupted mid-step, so the shared model is never left half-used.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]


class Cancelled(Exception):
    """Raised from a progress callback to stop a computation between two steps."""


def no_progress(_step: int, _total: int) -> None:
    """The callback of synchronous calls: nobody is watching, nothing can cancel."""
