"""Job records: statuses, what a job returns, and the snapshot answers are built from."""

from __future__ import annotations

import json
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from model_registry.errors import NotFinished, NotFound, TooManyJobs
from service.engine.progress import Cancelled, Progress
from service.jobs.shard_records import ShardsView
from service.workers.tenancy import OPEN, Tenant

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


Work = Callable[[Progress], Encoded]
"""A job: it reports its steps to the progress callback and returns its encoded answer."""


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
    owner: str = ""  # the tenant that submitted it
    sharded: bool = False  # split into slices that replicas run (`shard_records`)


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
    shards: ShardsView | None = None


def view_of(job: JobRecord, now: float, shards: ShardsView | None = None) -> JobView:
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
        shards=shards,
    )


@dataclass(frozen=True)
class Replay:
    """The HTTP request that started a job: any replica can run it again to do the job, as
    the tenant that sent it (the key itself is never stored)."""

    method: str
    path: str
    query: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    tenant: Tenant = OPEN

    def dumps(self) -> bytes:
        head = {
            "method": self.method,
            "path": self.path,
            "query": self.query.decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
            "tenant": self.tenant.name,
            "admin": self.tenant.admin,
        }
        return json.dumps(head).encode() + b"\n" + self.body

    @classmethod
    def loads(cls, blob: bytes) -> Replay:
        head_bytes, _, body = blob.partition(b"\n")
        head = json.loads(head_bytes)
        headers = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in head["headers"])
        tenant = Tenant(head.get("tenant", ""), admin=bool(head.get("admin", False)))
        query = head["query"].encode("latin-1")
        return cls(head["method"], head["path"], query, headers, body, tenant)


@dataclass(frozen=True)
class JobForms:
    """A job in the two forms the stores need: `work` to run on `runner` in this process, and
    `replay`, the request any replica runs again to do it."""

    work: Work
    runner: Runner | None = None
    replay: Replay | None = None


class Jobs(ABC):
    """Where jobs live: this process (`JobStore`) or Redis (`RedisJobStore`).

    `submit` takes both forms of a job (`JobForms`); each store's `_queue` uses the form it
    needs.
    The answers a client gets for a full store, an unknown job or an unfinished one are the
    same from both stores.
    """

    max_jobs: int
    ttl_s: float
    tenant_max_jobs: int | None = None
    _clock: Callable[[], float]

    def submit(
        self,
        kind: str,
        work: Work,
        *,
        total: int,
        runner: Runner | None = None,
        replay: Replay | None = None,
        tenant: Tenant = OPEN,
    ) -> JobView:
        """Record a new job of `total` steps for `tenant` and start it; raises `TooManyJobs`
        (429) when every slot, or every one of the tenant's, holds an unfinished job."""
        job = JobRecord(
            id=uuid.uuid4().hex, kind=kind, total=total, created=self._clock(), owner=tenant.name
        )
        return self._queue(job, JobForms(work, runner, replay))

    @abstractmethod
    def _queue(self, job: JobRecord, forms: JobForms) -> JobView:
        """Admit the new `job` and start it (or raise why not)."""

    @abstractmethod
    def start(self) -> None: ...

    # A job another tenant submitted answers as an unknown one (404): existence does not leak.

    @abstractmethod
    def get(self, job_id: str, tenant: Tenant = OPEN) -> JobView: ...

    @abstractmethod
    def result(self, job_id: str, tenant: Tenant = OPEN) -> tuple[JobView, Encoded]: ...

    @abstractmethod
    def delete(self, job_id: str, tenant: Tenant = OPEN) -> JobView: ...

    @abstractmethod
    def shutdown(self, timeout_s: float = 60.0) -> None: ...

    def full(self) -> TooManyJobs:
        """The 429 for a store whose `max_jobs` slots all hold unfinished jobs."""
        return TooManyJobs(
            f"{self.max_jobs} jobs are queued or running; retry later or DELETE one",
            max_jobs=self.max_jobs,
            retry_after=5,
        )

    def tenant_full(self) -> TooManyJobs:
        """The 429 for a tenant whose `tenant_max_jobs` jobs are all queued or running."""
        return TooManyJobs(
            f"this key's {self.tenant_max_jobs} jobs are queued or running "
            "(LAYERSCOPE_TENANT_MAX_JOBS); retry later or DELETE one",
            tenant_max_jobs=self.tenant_max_jobs,
            retry_after=5,
        )

    def unknown(self, job_id: str) -> NotFound:
        """The 404 for a job never started, deleted, or expired."""
        return NotFound(
            f"Unknown job '{job_id}': it never existed, was deleted, or expired "
            f"({self.ttl_s:g} s after it finished)",
            field="job_id",
        )

    @staticmethod
    def not_finished(job: JobRecord) -> NotFinished:
        """The 409 for the result of a job that has not succeeded (yet)."""
        return NotFinished(
            f"job {job.id} is {job.status}; its result exists once it has succeeded",
            field="job_id",
            status=job.status,
        )
