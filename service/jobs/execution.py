"""One job run on this replica, from the queue: its progress, how it ends, and its shards.

`call_app` replays the job's request with an `Execution` in the scope; the route's
`answer_or_job` (one `Work`) or `answer_dataset_job` (a `ShardedWork`) hands the work to it,
and it runs that work on the device thread as this job. A sharded job's first run (`shard`
None) computes the prelude and plans the slices, which the queue then enqueues; each slice's
run stores its partial, and the run that stores the last one merges them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from model_registry.errors import ClientError
from model_registry.registry import LoadedModel
from service.engine.partials import pack, unpack
from service.engine.progress import Cancelled, Progress
from service.jobs.job_records import CANCELLED, FAILED, SUCCEEDED, Encoded, TimedOut
from service.jobs.on_device import on_device
from service.jobs.redis_jobs import LeaseLost, RedisJobStore
from service.jobs.shards import ShardedWork
from service.workers.pool import InferencePool
from service.workers.redis_link import OUTAGE

log = logging.getLogger("layerscope")


class HandBack(Cancelled):
    """This replica is shutting down: the job goes back to the queue for another one."""


class Execution:
    """One claimed job (or one slice of a sharded job) run on this replica.

    `outcome` is what the queue records; `planned` the slices it must enqueue after a
    sharded job's first run.
    """

    def __init__(
        self,
        store: RedisJobStore,
        job_id: str,
        worker: str,
        halt: threading.Event,
        *,
        shard: int | None = None,
        shard_images: int = 0,
        stored: bool = False,
    ) -> None:
        self.store, self.job_id, self.worker = store, job_id, worker
        self.halt = halt
        self.shard, self.shard_images = shard, shard_images
        self.outcome: tuple[str, Encoded | None, dict | None, int | None] | None = None
        self.lost = False
        self.handed_back = False
        self.planned = 0
        # A slice whose partial an earlier run stored: only the merge may be left.
        self.stored = stored
        # Who may end the record: the replica it names, or (for a sharded job) any slice's.
        self.finish_as = worker if shard is None else ""

    def _check(self, state: str, deadline: float) -> None:
        if state in ("lost", "finished"):
            raise LeaseLost(f"job {self.job_id} is now run by another replica, or has ended")
        if state == "cancel":
            raise Cancelled(f"job {self.job_id} was cancelled")
        if self.halt.is_set():
            raise HandBack(f"job {self.job_id} goes back to the queue")
        if time.time() > deadline:
            timeout = self.store.timeout_s
            raise TimedOut(f"job {self.job_id} ran past its limit of {timeout:g} s")

    def _progress(self, deadline: float) -> Progress:
        def progress(step: int, total: int) -> None:
            try:
                if self.shard is None:
                    state = self.store.progress(self.job_id, self.worker, step, total)
                else:
                    shards = self.store.shards
                    state = shards.progress(self.job_id, self.shard, self.worker, step)
            except OUTAGE:
                state = "ok"  # keep computing; the outcome is written once Redis is back
            self._check(state, deadline)

        return progress

    async def _on_device(
        self, pool: InferencePool, model: LoadedModel, work: Callable[[Progress], Any]
    ) -> tuple[bool, Any]:
        """(True, what `work` returned), or (False, None) with the outcome set."""
        timeout = self.store.timeout_s
        progress = self._progress(time.time() + timeout)
        job, start = on_device(pool, model, work, timeout_s=timeout)
        try:
            return True, await asyncio.wrap_future(start(lambda: job(progress)))
        except HandBack:
            self.handed_back = True
        except LeaseLost:
            self.lost = True
        except TimedOut as exc:
            self.outcome = (FAILED, None, {"detail": str(exc), "timeout_s": timeout}, 504)
        except Cancelled:
            self.outcome = (CANCELLED, None, None, None)
        except ClientError as exc:
            self.outcome = (FAILED, None, exc.body(), exc.status)
        except Exception as exc:
            log.error("job %s failed", self.job_id, exc_info=exc)
            self.outcome = (FAILED, None, {"detail": "Internal server error"}, 500)
        return False, None

    async def run(
        self,
        pool: InferencePool,
        model: LoadedModel,
        work: Callable[[Progress], Encoded],
        total: int,
    ) -> Response:
        """Run `work` as this job on `model`'s device thread (called by `answer_or_job`)."""

        def call(progress: Progress) -> Encoded:
            progress(0, total)
            return work(progress)

        done, result = await self._on_device(pool, model, call)
        if done:
            self.outcome = (SUCCEEDED, result, None, None)
        return Response(status_code=204)

    async def run_sharded(
        self, pool: InferencePool, model: LoadedModel, work: ShardedWork
    ) -> Response:
        """The job's first run plans its slices; a slice's run computes and stores its
        partial, and merges every partial when it stores the last (`answer_dataset_job`)."""
        if self.shard is not None:
            await self._run_slice(pool, model, work)
            return Response(status_code=204)
        slices = work.slices(self.shard_images) if self.shard_images else [work.indices]
        if len(slices) < 2:
            return await self.run(pool, model, work.whole(), len(work.indices))
        done, prelude = await self._on_device(pool, model, lambda p: pack(work.prelude(p)))
        if done:
            size, count = self.shard_images, len(slices)
            plan = self.store.shards.plan
            state = await asyncio.to_thread(plan, self.job_id, self.worker, count, size, prelude)
            if state == "ok":
                self.planned = count
            elif state == "cancel":
                self.outcome = (CANCELLED, None, None, None)
            else:
                self.lost = True
        return Response(status_code=204)

    async def _run_slice(self, pool: InferencePool, model: LoadedModel, work: ShardedWork) -> None:
        shards, shard = self.store.shards, self.shard
        assert shard is not None
        size = await asyncio.to_thread(shards.size, self.job_id)
        blob = await asyncio.to_thread(shards.prelude, self.job_id)
        if size is None or blob is None:
            self._evicted()  # a no-op when the job ended meanwhile (its slices are dropped)
            return
        prelude, part = unpack(blob), work.slices(size)[shard]
        partial = b""
        if not self.stored:
            done, partial = await self._on_device(
                pool, model, lambda p: pack(work.run(part, prelude, p))
            )
            if not done:
                return
        state = await self._retry(shards.store, self.job_id, shard, self.worker, len(part), partial)
        if state in ("lost", "finished"):
            self.lost = True
        elif state == "evicted":
            self._evicted()
        elif state == "merge":
            count = len(work.slices(size))
            blobs = await self._retry(shards.partials, self.job_id, count)
            if blobs is None:
                self._evicted()
                return

            def merge(_progress: Progress) -> Encoded:
                return work.merge([unpack(b) for b in blobs], prelude)

            started = time.perf_counter()
            done, result = await self._on_device(pool, model, merge)
            if done:
                await self._retry(shards.merged, self.job_id, time.perf_counter() - started)
                self.outcome = (SUCCEEDED, result, None, None)

    def _evicted(self) -> None:
        """The slices' data left Redis while the job ran (maxmemory eviction, or a Redis
        without persistence restarted): the job fails with that reason rather than waiting
        for a partial that will never come."""
        detail = (
            "Redis no longer holds this job's slices (evicted at maxmemory, or Redis restarted "
            "without its data); submit the job again"
        )
        self.outcome = (FAILED, None, {"detail": detail}, 503)

    async def _retry(self, call: Any, *args: Any) -> Any:
        """Through a Redis outage: a slice's partial is never dropped while this replica lives."""
        while True:
            try:
                return await asyncio.to_thread(call, *args)
            except OUTAGE:
                await asyncio.sleep(1.0)
