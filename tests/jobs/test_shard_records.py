"""The shard scripts on a real redis-server: one merger, a lost slice cannot overwrite its new
owner, progress counts pictures over every slice, and data evicted by Redis fails the job
rather than leaving it waiting for a partial that never comes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from service.jobs.shard_records import ShardRecords
from tests.redis_support import RedisServer

PREFIX = "layerscope:job:"


@pytest.fixture
def shards(redis_server: RedisServer) -> Iterator[tuple[ShardRecords, redis.Redis]]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.hset(PREFIX + "j", mapping={"status": "running", "worker": "a", "step": 0})
    records = ShardRecords(client, prefix=PREFIX, keep_s=60)
    assert records.plan("j", "a", 3, 10, b"prelude") == "ok"
    try:
        yield records, client
    finally:
        client.close()


def test_slices_store_once_and_the_last_one_merges(shards) -> None:
    records, client = shards
    assert records.size("j") == 10 and records.prelude("j") == b"prelude"
    for i, worker in enumerate("aba"):
        assert records.claim("j", i, worker) == "run"
    assert records.progress("j", 1, "b", 4) == "ok"
    assert int(client.hget(PREFIX + "j", "step")) == 4
    assert records.claim("j", 1, "a") == "run"  # b presumed dead: a runs slice 1 again
    assert records.progress("j", 1, "b", 7) == "lost"
    assert records.store("j", 1, "b", 10, b"late") == "lost"
    assert int(client.hget(PREFIX + "j", "step")) == 0
    assert records.store("j", 0, "a", 10, b"p0") == "wait"
    assert records.store("j", 1, "a", 10, b"p1") == "wait"
    assert records.store("j", 2, "a", 7, b"p2") == "merge"
    assert records.store("j", 2, "a", 7, b"") == "merge"  # its rerun merges again
    assert records.store("j", 0, "a", 10, b"") == "wait"  # but no other slice does
    assert records.partials("j", 3) == [b"p0", b"p1", b"p2"]
    assert int(client.hget(PREFIX + "j", "step")) == 27
    view = records.view("j")
    assert view is not None and (view.total, view.done, view.running) == (3, 3, ())
    assert view.by_replica == {"a": 3} and view.rerun == (1,)


def test_an_evicted_partial_fails_the_job_instead_of_waiting(shards) -> None:
    records, client = shards
    for i in range(3):
        assert records.claim("j", i, "a") == "run"
    assert records.store("j", 0, "a", 10, b"p0") == "wait"
    client.delete(PREFIX + "j:partials")  # as volatile-lru would under maxmemory
    assert records.store("j", 1, "a", 10, b"p1") == "evicted"
    assert records.partials("j", 3) is None


def test_an_evicted_plan_fails_the_job(shards) -> None:
    records, client = shards
    assert records.claim("j", 0, "a") == "run"
    client.delete(PREFIX + "j:shards")
    assert records.store("j", 0, "a", 10, b"p0") == "evicted"
    assert records.size("j") is None
