"""Job records: statuses, what a job returns, and the snapshot answers are built from."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field

from service.engine.insight.progress import Cancelled

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)


Runner = Callable[[Callable[[], None]], futures.Future]
"""Starts a call somewhere (a device worker) and returns its future."""


@dataclass(frozen=True)
class Encoded:
    """What a job returns: the bytes of an HTTP answer and their media type."""

    body: bytes
    media_type: str


class TimedOut(Cancelled):
    """The job ran past its time limit."""


@dataclass
class JobRecord:
    id: str
    kind: str
    total: int
    created: float
    status: str = QUEUED
    step: int = 0
    started: float | None = None
    finished: float | None = None
    result: Encoded | None = None
    error: dict | None = None
    error_status: int | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class JobView:
    """A consistent snapshot of one job, for answers.

    Attributes:
        eta_s: seconds left, extrapolated from the steps done so far (None until one is).
        created, started, finished: wall-clock times (seconds since the epoch).
        media_type: of the result, when the job succeeded.
    """

    id: str
    kind: str
    status: str
    step: int
    total: int
    eta_s: float | None
    elapsed_s: float
    created: float
    started: float | None
    finished: float | None
    media_type: str | None
    error: dict | None
    error_status: int | None
    cancel_requested: bool


def view_of(job: JobRecord, now: float) -> JobView:
    """The job as it stands at `now`."""
    end = job.finished if job.finished is not None else now
    elapsed = end - job.started if job.started is not None else 0.0
    if job.status in FINISHED:
        eta = 0.0
    elif job.status == RUNNING and job.step > 0:
        eta = elapsed / job.step * max(job.total - job.step, 0)
    else:
        eta = None
    return JobView(
        id=job.id,
        kind=job.kind,
        status=job.status,
        step=job.step,
        total=job.total,
        eta_s=eta,
        elapsed_s=elapsed,
        created=job.created,
        started=job.started,
        finished=job.finished,
        media_type=job.result.media_type if job.result is not None else None,
        error=job.error,
        error_status=job.error_status,
        cancel_requested=job.cancel.is_set(),
    )
