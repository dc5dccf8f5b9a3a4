"""The saq queue's seam against a real redis-server: when saq's sweep gives up a job whose
replicas kept dying, the record clients read fails with that reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
from saq import Job, Status
from starlette.applications import Starlette

from service.jobs.job_queue import RUN, JobQueue
from service.jobs.job_records import Encoded, Replay
from service.jobs.redis_jobs import RedisJobStore
from service.workers.redis_link import connect, connect_async
from tests.redis_support import RedisServer

REPLAY = Replay("POST", "/v1/models/digits/layers/relu2/maximize", b"steps=3", (), b"")


@pytest.fixture
def url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.close()


def test_a_job_whose_replica_died_on_its_last_attempt_fails_with_the_reason(url: str) -> None:
    store = RedisJobStore(connect(url), attempts=1, ttl_s=60)
    view = store.submit("maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY)

    async def a_replica_takes_it_and_dies() -> None:
        client = connect_async(url, read_timeout_s=1.0)
        runner = JobQueue(Starlette(), store, client, worker="b", lease_s=0.5, heartbeat_s=0.1)
        queue = runner.queue
        await queue.connect()
        await queue.enqueue(Job(RUN, kwargs={"job_id": view.id}, key=view.id, heartbeat=1))
        taken = await queue.dequeue(timeout=1.0)
        assert taken is not None
        taken.attempts += 1  # what saq's Worker.process does as it starts a job
        await taken.update(status=Status.ACTIVE)
        assert store.claim(view.id, "a", taken.attempts) == "run"
        await asyncio.sleep(1.2)  # no beat for longer than the job's heartbeat
        assert await queue.sweep(lock=1) == [taken.id]
        await queue.disconnect()

    asyncio.run(a_replica_takes_it_and_dies())
    body = store.get(view.id)
    assert body.status == "failed" and body.error_status == 500
    assert body.error is not None and body.error["attempts"] == 1
    assert "lost the replica running it 1 time(s)" in body.error["detail"]
