"""saq's Redis queue, quiet through a Redis outage.

saq logs a traceback per failed poll and would spin on a failing dequeue; here each call
waits and tries again, and saq's giving a job up (its replicas kept dying) is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
from saq import Job, Status
from saq.queue.redis import RedisQueue

from service.workers.redis_link import OUTAGE

NAME = "layerscope"


class QuietQueue(RedisQueue):
    """saq's Redis queue, quiet through a Redis outage (saq logs a traceback per failed poll
    and would spin on a failing dequeue), and telling us when saq gives a job up."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        retry_s: float,
        abort_wait_s: float,
        given_up: Callable[[Job], Awaitable[None]],
    ) -> None:
        super().__init__(client, name=NAME)
        self.retry_s, self.abort_wait_s, self.given_up = retry_s, abort_wait_s, given_up

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:
        try:
            return await super().dequeue(timeout, poll_interval)
        except OUTAGE:
            await asyncio.sleep(self.retry_s)
            return None

    async def schedule(self, lock: int = 1) -> list[str]:
        with contextlib.suppress(*OUTAGE):
            return await super().schedule(lock)
        return []

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        # A dead replica never confirms the abort: wait a heartbeat for it, not saq's 5 s.
        with contextlib.suppress(*OUTAGE):
            return await super().sweep(lock, abort=self.abort_wait_s)
        return []

    async def write_worker_info(self, worker_id: str, info: Any, ttl: int) -> None:
        with contextlib.suppress(*OUTAGE):
            await super().write_worker_info(worker_id, info, ttl)

    async def finish(self, job: Job, status: Status, **kwargs: Any) -> None:
        await super().finish(job, status, **kwargs)
        if status != Status.COMPLETE and not job.retryable:
            await self.given_up(job)  # swept `retries` times: its replicas kept dying
