"""Job records in Redis, so any replica answers, cancels or returns any job.

The `Jobs` interface of the in-process `JobStore`, plus what the queue (`job_queue`, on saq)
needs to run a job on one replica: claim it, report progress (which is also where
cancellation and a lost lease are noticed), finish it, or hand it back. saq carries the job
id between replicas; the record here is what clients see, admitted by count, bytes and
tenant, which saq has no notion of. Records of unfinished jobs stay until
they finish; finished ones expire `ttl_s` later. At most `max_jobs` records and `max_bytes`
of requests and results are kept; finished jobs are evicted first, oldest first.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import redis

from model_registry.errors import TooManyJobs
from service.engine.progress import Cancelled
from service.jobs import redis_scripts as lua
from service.jobs.job_records import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    Encoded,
    JobForms,
    JobRecord,
    Jobs,
    JobView,
    Replay,
    view_of,
)
from service.jobs.shard_records import ShardRecords
from service.workers.redis_link import OUTAGE, PREFIX, outage_is_503, unavailable
from service.workers.tenancy import OPEN, Tenant

RECORD = PREFIX + "job:"
INDEX = PREFIX + "jobs"

Enqueue = Callable[[str], None]
"""Hands a recorded job's id to the queue the replicas consume (raises a Redis outage)."""


class LeaseLost(Cancelled):
    """Another replica took the job over (this one was presumed dead): stop, write nothing."""


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _float(value: bytes | None) -> float | None:
    return float(value) if value else None


def record_of(job_id: str, fields: dict[bytes, bytes]) -> JobRecord:
    """A hash as Redis keeps it -> the record `view_of` reads."""
    job = JobRecord(
        id=job_id,
        kind=_text(fields.get(b"kind")) or "",
        total=int(fields.get(b"total", b"0")),
        created=float(fields.get(b"created", b"0")),
        status=_text(fields.get(b"status")) or "queued",
        step=int(fields.get(b"step", b"0")),
        started=_float(fields.get(b"started")),
        finished=_float(fields.get(b"finished")),
        error=json.loads(fields[b"error"]) if fields.get(b"error") else None,
        error_status=int(fields[b"error_status"]) if fields.get(b"error_status") else None,
        worker=_text(fields.get(b"worker")) or None,
        attempts=int(fields.get(b"attempts", b"0")),
        owner=_text(fields.get(b"owner")) or "",
        sharded=bool(fields.get(b"shards")),
    )
    if fields.get(b"media_type"):
        job.result = Encoded(b"", fields[b"media_type"].decode())
    if fields.get(b"cancel") == b"1":
        job.cancel.set()
    return job


class RedisJobStore(Jobs):
    """Jobs in Redis; an outage answers 503 (`StoreUnavailable`) with Retry-After."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        max_jobs: int = 32,
        max_bytes: int = 512 * 1024 * 1024,
        ttl_s: float = 900.0,
        timeout_s: float = 900.0,
        attempts: int = 3,
        retry_after_s: int = 5,
        tenant_max_jobs: int | None = None,
        clock: Callable[[], float] = time.time,
        enqueue: Enqueue | None = None,
    ) -> None:
        # Any: redis-py types each reply as raw or decoded; this client's are raw bytes.
        self.redis: Any = client
        self.max_jobs, self.max_bytes = max_jobs, max_bytes
        self.ttl_s, self.timeout_s, self.attempts = ttl_s, timeout_s, attempts
        self.retry_after_s = retry_after_s
        self.tenant_max_jobs = tenant_max_jobs
        self._clock = clock
        # None: records only, nothing runs them (the replica's queue sets it when it starts).
        self.enqueue = enqueue
        # A sharded job's slices: kept while it runs, up to a time limit per slice start.
        keep_s = ttl_s + timeout_s * (attempts + 1)
        self.shards = ShardRecords(client, prefix=RECORD, keep_s=keep_s)
        self._scripts: dict[str, Any] = {
            name: client.register_script(getattr(lua, name))
            for name in ("SUBMIT", "CLAIM", "PROGRESS", "FINISH", "DELETE", "HAND_BACK")
        }

    def _503(self):  # noqa: ANN202 - a context manager
        return outage_is_503(self.retry_after_s)

    def start(self) -> None:
        """Nothing to start: the replica's queue consumer runs the jobs."""

    def _queue(self, job: JobRecord, forms: JobForms) -> JobView:
        """Record the job and queue its request; `work` and `runner` are not used (the replica
        that takes it from the queue replays `replay` to build its own)."""
        replay = forms.replay
        if replay is None:
            raise ValueError("a Redis job needs the request that started it")
        args = [RECORD, job.id, job.kind, job.total, repr(job.created), replay.dumps()]
        args += [self.max_jobs, self.max_bytes, job.owner]
        args.append(-1 if self.tenant_max_jobs is None else self.tenant_max_jobs)
        with self._503():
            admitted = self._scripts["SUBMIT"](keys=[INDEX], args=args)
        if admitted == 0:
            raise self.full()
        if admitted == -2:
            raise self.tenant_full()
        if admitted == -1:
            raise TooManyJobs(
                f"the jobs kept hold {self.max_bytes} bytes of requests and results "
                "(LAYERSCOPE_REDIS_JOB_BYTES); retry later or DELETE one",
                max_bytes=self.max_bytes,
                retry_after=5,
            )
        if self.enqueue is not None:
            self._hand_to_queue(job.id)
        return view_of(job, job.created)

    def _hand_to_queue(self, job_id: str) -> None:
        assert self.enqueue is not None
        try:
            self.enqueue(job_id)
        except OUTAGE as exc:  # recorded but not queued: end the record, answer 503
            with contextlib.suppress(*OUTAGE):
                error = {"detail": "Redis went away while the job was queued"}
                self.finish(job_id, FAILED, error=error, error_status=503)
            raise unavailable(self.retry_after_s, exc) from exc

    def _record(self, job_id: str, tenant: Tenant) -> JobRecord:
        with self._503():
            fields = self.redis.hgetall(RECORD + job_id)
        if not fields:
            raise self.unknown(job_id)
        job = record_of(job_id, fields)
        if not tenant.sees(job.owner):
            raise self.unknown(job_id)
        return job

    def get(self, job_id: str, tenant: Tenant = OPEN) -> JobView:
        return self._view(self._record(job_id, tenant))

    def _view(self, job: JobRecord) -> JobView:
        shards = None
        if job.sharded:
            with self._503():
                shards = self.shards.view(job.id)
        return view_of(job, self._clock(), shards)

    def result(self, job_id: str, tenant: Tenant = OPEN) -> tuple[JobView, Encoded]:
        """The finished job's result; 409 while it runs or when it did not succeed."""
        job = self._record(job_id, tenant)
        body = None
        if job.status == SUCCEEDED and job.result is not None:
            with self._503():
                body = self.redis.get(RECORD + job_id + ":result")
        if body is None or job.result is None:
            raise self.not_finished(job)
        return self._view(job), Encoded(body, job.result.media_type)

    def delete(self, job_id: str, tenant: Tenant = OPEN) -> JobView:
        """Cancel an unfinished job (it stops at its next step), or forget a finished one."""
        key = RECORD + job_id
        keys = [key, key + ":request", key + ":result", INDEX]
        args = [job_id, repr(self._clock()), self._ttl, tenant.name, int(tenant.admin)]
        with self._503():
            flat = self._scripts["DELETE"](keys=keys, args=args)
        if not flat:
            raise self.unknown(job_id)
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return view_of(record_of(job_id, fields), self._clock())

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Nothing to stop: the queue consumer hands its running jobs back (app lifespan)."""

    @property
    def _ttl(self) -> int:
        return max(int(self.ttl_s * 1000), 1)

    # What the queue consumer calls (Redis errors propagate: the queue retries them).

    def claim(self, job_id: str, worker: str, attempt: int = 1) -> str:
        """'run' when `worker` now owns the job (its `attempt`-th start, as saq counts them);
        otherwise why it must be finished instead."""
        args = [worker, repr(self._clock()), attempt, self.timeout_s]
        return self._scripts["CLAIM"](keys=[RECORD + job_id], args=args).decode()

    def request(self, job_id: str) -> Replay | None:
        blob = self.redis.get(RECORD + job_id + ":request")
        return Replay.loads(blob) if blob is not None else None

    def progress(self, job_id: str, worker: str, step: int, total: int) -> str:
        """Record progress; 'cancel' once the client deleted the job, 'lost' once another
        replica owns it."""
        args = [worker, step, total]
        return self._scripts["PROGRESS"](keys=[RECORD + job_id], args=args).decode()

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        worker: str = "",
        result: Encoded | None = None,
        error: dict | None = None,
        error_status: int | None = None,
    ) -> bool:
        """End the job (only if `worker` still owns it, when given); True when this call did."""
        key = RECORD + job_id
        args = [
            worker,
            status,
            repr(self._clock()),
            self._ttl,
            result.media_type if result is not None else "",
            json.dumps(error) if error is not None else "",
            error_status or "",
            result.body if result is not None else b"",
        ]
        done = self._scripts["FINISH"](keys=[key, key + ":request", key + ":result"], args=args)
        if done:
            self.shards.forget(job_id, self._ttl)
        return bool(done)

    def cancel_now(self, job_id: str) -> bool:
        return self.finish(job_id, CANCELLED)

    def hand_back(self, job_id: str, worker: str) -> bool:
        return bool(self._scripts["HAND_BACK"](keys=[RECORD + job_id], args=[worker]))
