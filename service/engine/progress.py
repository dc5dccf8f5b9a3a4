"""Progress reporting and cooperative cancellation for long computations.

The engine calls `progress(step, total)` after each step. The caller decides what that
means: a job updates its progress and raises `Cancelled` when the client deleted it or its
time ran out. Nothing is interrupted mid-step, so the shared model is never left half-used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Progress = Callable[[int, int], None]


class Cancelled(Exception):
    """Raised from a progress callback to stop a computation between two steps."""


def no_progress(_step: int, _total: int) -> None:
    """The callback of synchronous calls: nobody is watching, nothing can cancel."""


_current: ContextVar[Progress] = ContextVar("layerscope_progress", default=no_progress)


@contextmanager
def reporting(progress: Progress) -> Iterator[None]:
    """Let code deep inside a computation report to `progress` without passing it down
    (ScoreCAM's and AblationCAM's masked passes, behind the method registry)."""
    token = _current.set(progress)
    try:
        yield
    finally:
        _current.reset(token)


def report(step: int, total: int) -> None:
    """Tell whoever is watching (see `reporting`) that `step` of `total` are done; may raise
    `Cancelled` between two steps."""
    _current.get()(step, total)
