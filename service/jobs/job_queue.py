"""The job queue every replica consumes, on saq (https://github.com/tobymao/saq).

Why saq: its `Worker` runs as asyncio tasks inside this app's event loop, so a job is a
coroutine here that hands its model work to this replica's device thread, as every request
does. It needs only croniter besides redis-py. arq was the other candidate: 0.28 pins
redis-py below 6 (this service runs 8) and aborts only with `allow_abort_jobs`.

What saq does: hand each job to one replica (`concurrency` jobs at a time), a heartbeat and
a sweep that gives a job whose replica stopped beating for `heartbeat` seconds to another
replica, a cap of `retries` starts, and putting a cancelled job back in the queue (how
SIGTERM hands the work back). What stays ours, because saq cannot do it: the records
clients read, admitted by count, bytes and tenant (`redis_jobs`); cancelling work that runs
on the device thread, where cancelling an asyncio task cannot reach (the progress callback
checks a flag between steps); the time limit, for the same reason; and the 503 while Redis
is down (saq only logs its errors, so its Redis calls are made quiet here and retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
from typing import Any

import redis.asyncio
from saq import Job, Worker
from saq.types import PartialTimersDict
from starlette.types import ASGIApp

from service.jobs.execution import Execution
from service.jobs.job_records import CANCELLED, FAILED
from service.jobs.quiet_queue import QuietQueue
from service.jobs.redis_jobs import RedisJobStore
from service.jobs.replay import call_app
from service.workers.redis_link import OUTAGE

log = logging.getLogger("layerscope")
RUN = "run"  # replay the job's stored request
SHARD = "shard"  # replay it to run one slice of a sharded dataset job


def replica_name() -> str:
    """This replica's worker name: host and process id (unique while it lives)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RunLater(Exception):
    """The replay was answered 503 (overloaded, or Redis went away): saq queues it again."""


class _InAppWorker(Worker):
    SIGNALS = []  # noqa: RUF012 - uvicorn owns SIGTERM; the app's lifespan stops the worker


class JobQueue:
    """Runs jobs from the shared queue, `slots` at a time, by replaying their requests
    through `app`."""

    def __init__(
        self,
        app: ASGIApp,
        store: RedisJobStore,
        client: redis.asyncio.Redis,
        *,
        worker: str,
        lease_s: float,
        heartbeat_s: float,
        slots: int = 1,
        drain_s: float = 30.0,
        shard_images: int = 0,
    ) -> None:
        self.app, self.store, self.name = app, store, worker
        self.shard_images = shard_images
        self.lease_s, self.heartbeat_s = lease_s, heartbeat_s
        self.retry_s = min(heartbeat_s, 1.0)
        self.queue = QuietQueue(
            client, retry_s=self.retry_s, abort_wait_s=heartbeat_s, given_up=self._given_up
        )
        self.worker = _InAppWorker(
            self.queue,
            functions=[(RUN, self._run), (SHARD, self._shard)],
            id=worker,
            concurrency=slots,
            # saq's timers are whole seconds (the sweep's is also the TTL of its lock).
            timers=PartialTimersDict(
                sweep=max(1, round(heartbeat_s)), abort=1, schedule=1, worker_info=10
            ),
            dequeue_timeout=heartbeat_s,
            cancellation_hard_deadline_s=drain_s,
        )
        self.stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.queue.connect()
        self._loop = asyncio.get_running_loop()
        self.store.enqueue = self.enqueue
        self._task = asyncio.create_task(self.worker.start())

    async def stop(self) -> None:
        """Running jobs stop at their next step and go back to the queue; then saq ends."""
        self.stopping.set()
        await self.worker.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(*OUTAGE):
            await self.queue.disconnect()

    def enqueue(self, job_id: str) -> None:
        """Queue a recorded job (called by the store, from a thread other than the loop's)."""
        if self._loop is None:
            raise RuntimeError("the job queue has not started")
        done = asyncio.run_coroutine_threadsafe(self.queue.enqueue(self._job(job_id)), self._loop)
        done.result(timeout=self.lease_s)

    def _job(self, job_id: str, shard: int | None = None) -> Job:
        kwargs: dict[str, Any] = {"job_id": job_id}
        if shard is not None:
            kwargs["shard"] = shard
        return Job(
            RUN if shard is None else SHARD,
            kwargs=kwargs,
            key=job_id if shard is None else f"{job_id}:shard:{shard}",
            timeout=0,  # the limit is ours: saq's would cancel the task, not the device work
            heartbeat=self.lease_s,  # type: ignore[arg-type]  # saq compares it as a number
            retries=self.store.attempts,
            ttl=max(int(self.store.ttl_s), 1),
        )

    async def _run(self, ctx: dict, *, job_id: str) -> None:
        job: Job = ctx["job"]
        state = await asyncio.to_thread(self.store.claim, job_id, self.name, job.attempts)
        if state != "run":
            await self._settle_unrun(job_id, state)
            return
        halt = threading.Event()  # read between steps on the device thread
        execution = Execution(self.store, job_id, self.name, halt, shard_images=self.shard_images)
        await self._claimed(job, execution)
        if execution.planned:  # a sharded job: its slices go to every replica's queue
            for shard in range(execution.planned):
                await self._retry_async(self.queue.enqueue, self._job(job_id, shard))

    async def _shard(self, ctx: dict, *, job_id: str, shard: int) -> None:
        job: Job = ctx["job"]
        claim = self.store.shards.claim
        state = await self._retry(claim, job_id, shard, self.name)
        if state in ("cancel", "finished"):
            await self._settle_unrun(job_id, state)
            return
        halt = threading.Event()
        execution = Execution(
            self.store, job_id, self.name, halt, shard=shard, stored=state == "stored"
        )
        await self._claimed(job, execution)

    async def _claimed(self, job: Job, execution: Execution) -> None:
        """Run a claimed job (or slice) with a heartbeat; record how it ended."""
        beat = asyncio.create_task(self._heartbeat(job))
        running = asyncio.create_task(self._execute(execution))
        try:
            await asyncio.shield(running)
        except asyncio.CancelledError:
            # saq cancels the task when this replica stops, or when a sweep gave the job to
            # another replica; the device work stops at its next step either way.
            execution.halt.set()
            await running
            if self.stopping.is_set():
                await self._hand_back(job, execution)
            raise
        finally:
            beat.cancel()
        if execution.lost:
            return  # another replica owns it now, or its record is gone
        if execution.handed_back:
            await self._hand_back(job, execution)
            raise RunLater(f"job {job.key} goes back to the queue")
        if execution.outcome is not None:
            await self._retry(self._record, execution.job_id, execution)

    async def _execute(self, execution: Execution) -> None:
        replay = await asyncio.to_thread(self.store.request, execution.job_id)
        if replay is None:
            if execution.shard is None:
                execution.outcome = (FAILED, None, {"detail": "the job's request was lost"}, 500)
            else:
                execution.lost = True  # the job ended (its request goes with it)
            return
        try:
            status, body = await call_app(self.app, replay, execution)
        except Exception:  # the app answered 500 and re-raised; it is logged there
            status, body = 500, b'{"detail": "Internal server error"}'
        # Nothing left to record: the job moved on (lost, handed back, split into slices),
        # or a slice answered 204 after storing its partial without merging.
        settled = execution.lost or execution.handed_back or execution.planned
        slice_stored = execution.shard is not None and status < 400
        if execution.outcome is None and not (settled or slice_stored):
            if status == 503:  # overloaded or Redis gone while replaying: run it later
                execution.handed_back = True
            elif status < 400:  # e.g. a replica of another version answered it directly
                detail = {"detail": "the job's request no longer starts a job on this replica"}
                execution.outcome = (FAILED, None, detail, 500)
            else:  # the request failed before any work started (e.g. its image expired)
                execution.outcome = (FAILED, None, _error_body(body, status), status)

    async def _hand_back(self, job: Job, execution: Execution) -> None:
        """Back to the queue without counting a start (saq counts one per dequeue)."""
        job.attempts -= 1
        if execution.shard is None:
            with contextlib.suppress(*OUTAGE):
                await asyncio.to_thread(self.store.hand_back, execution.job_id, self.name)

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            with contextlib.suppress(*OUTAGE):  # renewed at the next beat once Redis is back
                await job.update()

    def _record(self, job_id: str, execution: Execution) -> None:
        assert execution.outcome is not None
        status, result, error, error_status = execution.outcome
        self.store.finish(
            job_id,
            status,
            worker=execution.finish_as,
            result=result,
            error=error,
            error_status=error_status,
        )

    async def _settle_unrun(self, job_id: str, state: str) -> None:
        store = self.store
        if state == "cancel":
            await self._retry(store.finish, job_id, CANCELLED)
        elif state == "late":
            detail = f"the job was still queued {store.timeout_s:g} s after it was submitted"
            error = {"detail": detail, "timeout_s": store.timeout_s}
            await self._retry(store.finish, job_id, FAILED, error=error, error_status=504)

    async def _given_up(self, job: Job) -> None:
        detail = (
            f"the job lost the replica running it {job.attempts} time(s) (killed, out of "
            "memory or node lost); it is not run again"
        )
        error = {"detail": detail, "attempts": job.attempts}
        with contextlib.suppress(*OUTAGE):
            job_id = job.kwargs["job_id"] if job.kwargs else job.key
            await asyncio.to_thread(
                self.store.finish, job_id, FAILED, error=error, error_status=500
            )

    async def _retry(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """Retry through a Redis outage: an outcome is never dropped while this process lives."""
        return await self._retry_async(asyncio.to_thread, call, *args, **kwargs)

    async def _retry_async(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        while True:
            try:
                return await call(*args, **kwargs)
            except OUTAGE:
                await asyncio.sleep(self.retry_s)


def _error_body(body: bytes, status: int) -> dict:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"detail": f"the request failed ({status})"}
