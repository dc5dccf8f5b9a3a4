"""Job records: statuses, what a job returns, and the snapshot answers are built from."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.engine.insight.progress import Cancelled, Progress

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)


Runner = Callable[[Callable[[], Any]], futures.Future]
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
    worker: str | None = None
    attempts: int = 0


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
    worker: str | None = None
    attempts: int = 0


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
        worker=job.worker,
        attempts=job.attempts,
    )


@dataclass(frozen=True)
class Replay:
    """The HTTP request that started a job: any replica can run it again to do the job."""

    method: str
    path: str
    query: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def dumps(self) -> bytes:
        head = {
            "method": self.method,
            "path": self.path,
            "query": self.query.decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
        }
        return json.dumps(head).encode() + b"\n" + self.body

    @classmethod
    def loads(cls, blob: bytes) -> Replay:
        head_bytes, _, body = blob.partition(b"\n")
        head = json.loads(head_bytes)
        headers = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in head["headers"])
        return cls(head["method"], head["path"], head["query"].encode("latin-1"), headers, body)


class Jobs(Protocol):
    """Where jobs live: this process (`JobStore`) or Redis (`RedisJobStore`).

    `submit` takes both forms of a job: `work` and `runner` run it here; `replay` is the
    request any replica runs again to do it. Each store uses the form it needs.
    """

    def start(self) -> None: ...

    def submit(
        self,
        kind: str,
        work: Callable[[Progress], Encoded],
        *,
        total: int,
        runner: Runner | None = None,
        replay: Replay | None = None,
    ) -> JobView: ...

    def get(self, job_id: str) -> JobView: ...

    def result(self, job_id: str) -> tuple[JobView, Encoded]: ...

    def delete(self, job_id: str) -> JobView: ...

    def shutdown(self, timeout_s: float = 60.0) -> None: ...
