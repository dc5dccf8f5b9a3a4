"""Long-running work as jobs: bounded in number and time, with progress, cancellation and a TTL.

The store keeps the records; it runs no model code itself. A job is a function of one
argument, a progress callback, handed to a runner: in the service, the model's device
worker (`jobs.on_device.on_device`), so a job gets the same queue, deadline, out-of-memory
handling (507) and stage metrics as every other piece of model work. The callback records
step/total and is where cancellation happens: it raises `Cancelled` once the client deleted
the job or its time ran out, so work stops between two steps and the shared model is never
abandoned mid-pass. Finished jobs keep their result for `ttl_s` seconds, then disappear.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures

from model_registry.errors import ClientError
from service.engine.progress import Cancelled
from service.jobs.job_records import (
    CANCELLED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Encoded,
    JobForms,
    JobRecord,
    Jobs,
    JobView,
    Runner,
    TimedOut,
    Work,
    view_of,
)
from service.workers.tenancy import OPEN, Tenant

log = logging.getLogger("layerscope")


class JobStore(Jobs):
    """Jobs by id: at most `max_jobs` kept (finished ones are evicted first), each allowed
    `timeout_s` of running time and kept `ttl_s` after it finishes."""

    def __init__(
        self,
        *,
        runner: Runner | None = None,
        max_jobs: int = 32,
        ttl_s: float = 900.0,
        timeout_s: float = 900.0,
        tenant_max_jobs: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._runner = runner
        self.tenant_max_jobs = tenant_max_jobs
        self._running: set[futures.Future] = set()
        self._jobs: dict[str, JobRecord] = {}
        self._lock = threading.Lock()
        self.max_jobs = max_jobs
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread that drops expired jobs even when nobody asks about them."""
        if self._sweeper is None:
            self._sweeper = threading.Thread(
                target=self._sweep_forever, name="layerscope-job-sweeper", daemon=True
            )
            self._sweeper.start()

    def _sweep_forever(self) -> None:
        interval = min(max(self.ttl_s / 4, 0.05), 30.0)
        while not self._stop.wait(interval):
            self.sweep()

    def _queue(self, job: JobRecord, forms: JobForms) -> JobView:
        """Queue the job's `work` on its `runner` (default: the store's)."""
        start = forms.runner or self._runner
        if start is None:
            raise ValueError("no runner for the job")
        with self._lock:
            self._sweep_locked()
            if len(self._jobs) >= self.max_jobs:
                self._evict_oldest_finished_locked()
            if len(self._jobs) >= self.max_jobs:
                raise self.full()
            limit = self.tenant_max_jobs
            if limit is not None and limit <= sum(
                other.owner == job.owner and other.status not in FINISHED
                for other in self._jobs.values()
            ):
                raise self.tenant_full()
            self._jobs[job.id] = job
            view = self._view_locked(job)

        def run_job() -> None:
            self._run(job, forms.work)

        run_job.__name__ = f"job_{job.kind}"  # the stage its duration is reported under
        future = start(run_job)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(lambda done: self._settle(job, done))
        return view

    def get(self, job_id: str, tenant: Tenant = OPEN) -> JobView:
        with self._lock:
            self._sweep_locked()
            return self._view_locked(self._find_locked(job_id, tenant))

    def result(self, job_id: str, tenant: Tenant = OPEN) -> tuple[JobView, Encoded]:
        """The finished job's result; 409 while it runs or when it did not succeed."""
        with self._lock:
            self._sweep_locked()
            job = self._find_locked(job_id, tenant)
            view = self._view_locked(job)
            if job.status != SUCCEEDED or job.result is None:
                raise self.not_finished(job)
            return view, job.result

    def delete(self, job_id: str, tenant: Tenant = OPEN) -> JobView:
        """Cancel an unfinished job (it stops at its next step), or forget a finished one."""
        with self._lock:
            self._sweep_locked()
            job = self._find_locked(job_id, tenant)
            if job.status in FINISHED:
                del self._jobs[job_id]
            elif job.status == QUEUED:
                job.cancel.set()
                self._finish_locked(job, CANCELLED)
            else:
                job.cancel.set()
            return self._view_locked(job)

    def sweep(self) -> int:
        """Drop finished jobs older than the TTL; returns how many went."""
        with self._lock:
            return self._sweep_locked()

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Ask every job to stop, then wait for them (jobs stop at their next step)."""
        self._stop.set()
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
            running = list(self._running)
        futures.wait(running, timeout=timeout_s)
        if self._sweeper is not None:
            self._sweeper.join()
            self._sweeper = None

    def _run(self, job: JobRecord, work: Work) -> None:
        with self._lock:
            if job.cancel.is_set():
                if job.status not in FINISHED:
                    self._finish_locked(job, CANCELLED)
                return
            job.status = RUNNING
            job.started = self._clock()
        deadline = job.started + self.timeout_s

        def progress(step: int, total: int) -> None:
            with self._lock:
                job.step, job.total = step, total
            if job.cancel.is_set():
                raise Cancelled(f"job {job.id} was cancelled")
            if self._clock() > deadline:
                raise TimedOut(f"job {job.id} ran past its limit of {self.timeout_s:g} s")

        try:
            progress(0, job.total)
            result = work(progress)
        except TimedOut as exc:
            self._fail(job, {"detail": str(exc), "timeout_s": self.timeout_s}, 504)
        except Cancelled:
            with self._lock:
                self._finish_locked(job, CANCELLED)
        except ClientError as exc:
            self._fail(job, exc.body(), exc.status)
        else:
            with self._lock:
                job.result = result
                job.step = job.total
                self._finish_locked(job, SUCCEEDED)

    def _settle(self, job: JobRecord, future: futures.Future) -> None:
        """Record what the runner reports: device errors (507, 504 for a job queued past its
        deadline) and failures the work did not expect (a bare 500, logged)."""
        with self._lock:
            self._running.discard(future)
        exc = None if future.cancelled() else future.exception()
        if job.status in FINISHED:
            return
        if isinstance(exc, ClientError):
            self._fail(job, exc.body(), exc.status)
        elif exc is not None:
            log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
            self._fail(job, {"detail": "Internal server error"}, 500)
        elif future.cancelled():
            with self._lock:
                if job.status not in FINISHED:
                    self._finish_locked(job, CANCELLED)

    def _fail(self, job: JobRecord, body: dict, status: int) -> None:
        with self._lock:
            job.error, job.error_status = body, status
            self._finish_locked(job, FAILED)

    def _finish_locked(self, job: JobRecord, status: str) -> None:
        job.status = status
        job.finished = self._clock()

    def _find_locked(self, job_id: str, tenant: Tenant) -> JobRecord:
        job = self._jobs.get(job_id)
        if job is None or not tenant.sees(job.owner):
            raise self.unknown(job_id)
        return job

    def _sweep_locked(self) -> int:
        now = self._clock()
        expired = [
            job_id
            for job_id, job in self._jobs.items()
            if job.status in FINISHED
            and job.finished is not None
            and now - job.finished > self.ttl_s
        ]
        for job_id in expired:
            del self._jobs[job_id]
        return len(expired)

    def _evict_oldest_finished_locked(self) -> None:
        finished = [job for job in self._jobs.values() if job.status in FINISHED]
        if finished:
            del self._jobs[min(finished, key=lambda job: job.finished or 0.0).id]

    def _view_locked(self, job: JobRecord) -> JobView:
        return view_of(job, self._clock())
