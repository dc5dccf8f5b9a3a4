"""The job queue every replica consumes: a Redis stream read through one consumer group.

Why a stream and not rq, arq or dramatiq: those run a job in their own worker process or
event loop, while every piece of model work here must run on this replica's device thread
(between two steps a job serves the requests queued behind it). A consumer group gives the
lease semantics directly: XREADGROUP hands a job to one replica; the entry stays pending to
that replica until it acknowledges it; XAUTOCLAIM lets another replica take entries idle
longer than the lease. A running job renews its lease every `heartbeat_s` (XCLAIM of its own
entry, which resets the idle time, and a heartbeat key that expires after `lease_s`). A
replica that dies (SIGKILL, OOM kill, node loss) stops renewing, and after `lease_s` a live
replica claims the entry and runs the job again from its stored request, up to `attempts`
times; then the job fails with that reason. A job therefore always ends: succeeded, failed
with a reason, or cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from typing import Any

import redis.asyncio
from redis.exceptions import ResponseError
from starlette.types import ASGIApp

from service.jobs.job_records import CANCELLED, FAILED
from service.jobs.redis_jobs import HEARTBEAT, QUEUE, RedisJobStore
from service.jobs.replay import Execution, call_app
from service.workers.redis_link import OUTAGE

log = logging.getLogger("layerscope")
GROUP = "replicas"


def replica_name() -> str:
    """This replica's consumer name: host and process id (unique while it lives)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class JobQueue:
    """Takes jobs from the stream, `slots` at a time, and runs them by replaying their
    requests through `app`."""

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
    ) -> None:
        self.app, self.store, self.worker = app, store, worker
        # Any: redis-py types each reply as raw or decoded; this client's are raw bytes.
        self.redis: Any = client
        self.lease_ms = max(int(lease_s * 1000), 1)
        self.heartbeat_s = heartbeat_s
        # An entry is claimed only once idle a heartbeat longer than the lease, so the
        # heartbeat key of a replica that stopped has expired by then.
        self.claim_idle_ms = self.lease_ms + max(int(heartbeat_s * 1000), 1)
        self._next_cleanup = 0.0
        self.slots = slots
        self.stopping = threading.Event()  # read by jobs on the device thread
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._consume()) for _ in range(self.slots)]

    async def stop(self, timeout_s: float) -> None:
        """Running jobs go back to the queue at their next step; then the consumers end."""
        self.stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.redis.aclose()

    async def _consume(self) -> None:
        down = False
        while not self.stopping.is_set():
            try:
                await self._ensure_group()
                if down:
                    log.warning("job queue: Redis is reachable again")
                    down = False
                entry = await self._reclaim() or await self._read()
                if entry is not None:
                    await self._handle(*entry)
            except OUTAGE as exc:
                if not down:  # once per outage, not once a second
                    log.warning("job queue: Redis unreachable (%s); retrying", type(exc).__name__)
                    down = True
                await asyncio.sleep(min(self.heartbeat_s, 1.0))
            except Exception:
                log.exception("job queue: unexpected error; retrying")
                await asyncio.sleep(min(self.heartbeat_s, 1.0))

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(QUEUE, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _reclaim(self) -> tuple[bytes, str] | None:
        """An entry whose lease ran out: its replica stopped renewing it."""
        _, entries, _ = await self.redis.xautoclaim(
            QUEUE, GROUP, self.worker, min_idle_time=self.claim_idle_ms, start_id="0-0", count=1
        )
        for entry_id, fields in entries:
            owner = await self.redis.get(HEARTBEAT + fields[b"job"].decode())
            if owner is not None and owner.decode() != self.worker:
                # Still heartbeating (its renewals were lost, e.g. while Redis restarted).
                await self.redis.xclaim(QUEUE, GROUP, owner.decode(), 0, [entry_id], justid=True)
                continue
            log.info("job queue: reclaimed job %s", fields[b"job"].decode())
            return entry_id, fields[b"job"].decode()
        await self._forget_gone_consumers()
        return None

    async def _forget_gone_consumers(self) -> None:
        """Drop consumers (replicas) long gone with nothing pending, about once a minute."""
        now = time.monotonic()
        if now < self._next_cleanup:
            return
        self._next_cleanup = now + 60.0
        for consumer in await self.redis.xinfo_consumers(QUEUE, GROUP):
            idle_ms = consumer.get("inactive", consumer.get("idle", 0))
            if consumer["pending"] == 0 and idle_ms > 10 * self.claim_idle_ms:
                await self.redis.xgroup_delconsumer(QUEUE, GROUP, consumer["name"])

    async def _read(self) -> tuple[bytes, str] | None:
        block = max(int(self.heartbeat_s * 1000), 1)
        answer = await self.redis.xreadgroup(GROUP, self.worker, {QUEUE: ">"}, count=1, block=block)
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                return entry_id, fields[b"job"].decode()
        return None

    async def _handle(self, entry_id: bytes, job_id: str) -> None:
        state = await asyncio.to_thread(self.store.claim, job_id, self.worker)
        if state != "run":
            await self._settle_unrun(job_id, state)
            await self._done(entry_id, job_id)
            return
        beat = asyncio.create_task(self._heartbeat(entry_id, job_id))
        try:
            await self._beat_once(entry_id, job_id)
            execution = await self._execute(job_id)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        if execution is None or execution.lost:
            return  # another replica owns it now, or its record is gone
        if execution.handed_back:
            await self._retry(self.store.hand_back, job_id, self.worker)
            await self._retry(self.redis.delete, HEARTBEAT + job_id, blocking=False)
            return  # still pending: a live replica claims it once its lease runs out
        await self._retry(self._record, job_id, execution)
        await self._done(entry_id, job_id)

    async def _execute(self, job_id: str) -> Execution | None:
        replay = await asyncio.to_thread(self.store.request, job_id)
        execution = Execution(self.store, job_id, self.worker, self.stopping)
        if replay is None:
            execution.outcome = (FAILED, None, {"detail": "the job's request was lost"}, 500)
            return execution
        try:
            status, body = await call_app(self.app, replay, execution)
        except Exception:  # the app answered 500 and re-raised; it is logged there
            status, body = 500, b'{"detail": "Internal server error"}'
        if execution.outcome is None and not (execution.lost or execution.handed_back):
            if status == 503:  # overloaded or Redis gone while replaying: run it later
                execution.handed_back = True
            elif status < 400:  # e.g. a replica of another version answered it directly
                detail = {"detail": "the job's request no longer starts a job on this replica"}
                execution.outcome = (FAILED, None, detail, 500)
            else:  # the request failed before any work started (e.g. its image expired)
                execution.outcome = (FAILED, None, _error_body(body, status), status)
        return execution

    def _record(self, job_id: str, execution: Execution) -> None:
        assert execution.outcome is not None
        status, result, error, error_status = execution.outcome
        self.store.finish(
            job_id,
            status,
            worker=self.worker,
            result=result,
            error=error,
            error_status=error_status,
        )

    async def _settle_unrun(self, job_id: str, state: str) -> None:
        store = self.store
        if state == "cancel":
            await self._retry(store.finish, job_id, CANCELLED)
        elif state == "lost":
            detail = (
                f"the job lost the replica running it {store.attempts} time(s) (killed, out of "
                "memory or node lost); it is not run again"
            )
            error = {"detail": detail, "attempts": store.attempts}
            await self._retry(store.finish, job_id, FAILED, error=error, error_status=500)
        elif state == "late":
            detail = f"the job was still queued {store.timeout_s:g} s after it was submitted"
            error = {"detail": detail, "timeout_s": store.timeout_s}
            await self._retry(store.finish, job_id, FAILED, error=error, error_status=504)

    async def _beat_once(self, entry_id: bytes, job_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(HEARTBEAT + job_id, self.worker, px=self.lease_ms)
        pipe.xclaim(QUEUE, GROUP, self.worker, 0, [entry_id], justid=True)
        await pipe.execute()

    async def _heartbeat(self, entry_id: bytes, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            with contextlib.suppress(*OUTAGE):  # renewed at the next beat once Redis is back
                await self._beat_once(entry_id, job_id)

    async def _done(self, entry_id: bytes, job_id: str) -> None:
        async def forget() -> None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(QUEUE, GROUP, entry_id).xdel(QUEUE, entry_id).delete(HEARTBEAT + job_id)
            await pipe.execute()

        await self._retry(forget, blocking=False)

    async def _retry(self, call: Any, *args: Any, blocking: bool = True, **kwargs: Any) -> Any:
        """Retry through a Redis outage: an outcome is never dropped while this process lives.
        A `blocking` call runs in a thread; otherwise `call` returns an awaitable."""
        while True:
            try:
                if blocking:
                    return await asyncio.to_thread(call, *args, **kwargs)
                return await call(*args, **kwargs)
            except OUTAGE:
                await asyncio.sleep(min(self.heartbeat_s, 1.0))


def _error_body(body: bytes, status: int) -> dict:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"detail": f"the request failed ({status})"}
