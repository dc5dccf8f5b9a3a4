"""The Redis-backed image and job stores against a real redis-server: two store objects
stand for two replicas; bounds, eviction, ownership, cancellation and a Redis outage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from model_registry.errors import NotFinished, NotFound, StoreUnavailable, TooManyJobs
from service.jobs.job_records import Encoded, Replay
from service.jobs.redis_jobs import RedisJobStore
from service.workers.image_store import ImageStore
from service.workers.redis_images import RedisImageStore
from service.workers.redis_link import connect
from service.workers.tenancy import OPEN
from tests.redis_support import RedisServer

REPLAY = Replay("POST", "/v1/models/digits/layers/relu2/maximize", b"steps=3", (), b"")


@pytest.fixture
def url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.close()


def images(url: str, **bounds: int) -> RedisImageStore:
    options = {"max_images": 8, "max_bytes": 1 << 20, **bounds}
    return RedisImageStore(connect(url), ttl_s=60, **options)


def jobs(url: str, **options: float) -> RedisJobStore:
    return RedisJobStore(connect(url), **{"max_jobs": 4, "ttl_s": 60, **options})  # type: ignore[arg-type]


def test_an_image_stored_by_one_replica_is_served_by_another(url: str) -> None:
    first, second = images(url), images(url)  # no configured secret: both use Redis's
    image_id = first.put(b"picture bytes", OPEN)
    assert second.get(image_id, OPEN) == b"picture bytes"
    assert second.put(b"picture bytes", OPEN) == image_id


def test_eviction_by_count_and_bytes_keeps_the_recently_used(url: str) -> None:
    store = images(url, max_images=2, max_bytes=1000)
    a, b = store.put(b"a" * 100, OPEN), store.put(b"b" * 100, OPEN)
    store.get(a, OPEN)  # a is now the most recently used
    c = store.put(b"c" * 100, OPEN)
    assert store.get(a, OPEN) == b"a" * 100 and store.get(c, OPEN) == b"c" * 100
    with pytest.raises(NotFound) as evicted:
        store.get(b, OPEN)
    local = ImageStore(max_images=1, max_bytes=1024)
    with pytest.raises(NotFound) as unknown_locally:
        local.get(b, OPEN)
    assert str(evicted.value) == str(unknown_locally.value)  # today's message
    big = store.put(b"d" * 900, OPEN)  # 1100 bytes with a and c: the least recently used goes
    assert store.get(big, OPEN) == b"d" * 900 and store.get(c, OPEN) == b"c" * 100
    with pytest.raises(NotFound):
        store.get(a, OPEN)


def test_a_job_is_seen_claimed_and_finished_from_any_replica(url: str) -> None:
    first, second = jobs(url), jobs(url)
    view = first.submit("maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY)
    assert second.get(view.id).status == "queued"
    assert second.request(view.id) == REPLAY
    assert second.claim(view.id, "replica-b") == "run"
    assert first.progress(view.id, "replica-b", 2, 3) == "ok"
    running = first.get(view.id)
    assert (running.status, running.step, running.worker, running.attempts) == (
        "running",
        2,
        "replica-b",
        1,
    )
    with pytest.raises(NotFinished):
        first.result(view.id)
    assert not first.finish(view.id, "succeeded", worker="replica-a", result=Encoded(b"x", "a/b"))
    assert first.progress(view.id, "replica-a", 3, 3) == "lost"
    assert second.finish(view.id, "succeeded", worker="replica-b", result=Encoded(b"ok", "a/b"))
    done, result = first.result(view.id)
    assert (done.status, done.step, result) == ("succeeded", 3, Encoded(b"ok", "a/b"))
    assert second.request(view.id) is None  # the request goes once the job ends
    assert first.delete(view.id).status == "succeeded"
    with pytest.raises(NotFound, match="Unknown job"):
        second.get(view.id)


def test_cancel_from_another_replica(url: str) -> None:
    first, second = jobs(url), jobs(url)
    queued = first.submit("maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY)
    assert second.delete(queued.id).status == "cancelled"
    assert first.claim(queued.id, "replica-a") == "finished"  # never runs
    running = first.submit("maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY)
    assert first.claim(running.id, "replica-a") == "run"
    assert second.delete(running.id).cancel_requested
    assert first.progress(running.id, "replica-a", 1, 3) == "cancel"
    assert first.finish(running.id, "cancelled", worker="replica-a")
    assert second.get(running.id).status == "cancelled"


def test_a_claim_records_the_start_saq_counts_and_only_its_holder_writes(url: str) -> None:
    store = jobs(url, attempts=2)
    view = store.submit("maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY)
    assert store.claim(view.id, "replica-a", 1) == "run"
    assert store.claim(view.id, "replica-b", 2) == "run"  # replica-a was lost
    assert store.get(view.id).attempts == 2 and store.get(view.id).worker == "replica-b"
    assert store.progress(view.id, "replica-a", 1, 3) == "lost"
    assert store.hand_back(view.id, "replica-b")  # SIGTERM: not a lost start
    assert store.get(view.id).attempts == 1 and store.get(view.id).status == "queued"


def test_bounded_number_of_jobs_evicts_finished_ones_first(url: str) -> None:
    store = jobs(url, max_jobs=2)
    first = store.submit("maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY)
    store.submit("maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY)
    with pytest.raises(TooManyJobs) as full:
        store.submit("maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY)
    assert full.value.status == 429 and full.value.extra["max_jobs"] == 2
    store.claim(first.id, "replica-a")
    store.finish(first.id, "failed", worker="replica-a", error={"detail": "x"}, error_status=422)
    store.submit("maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY)
    with pytest.raises(NotFound):
        store.get(first.id)


def test_job_bytes_are_capped(url: str) -> None:
    store = jobs(url, max_bytes=2048)
    big = Replay("POST", "/v1/models/digits/layers/relu2/invert", b"", (), b"x" * 1500)
    store.submit("invert", lambda p: Encoded(b"", ""), total=3, replay=big)
    with pytest.raises(TooManyJobs, match="LAYERSCOPE_REDIS_JOB_BYTES"):
        store.submit("invert", lambda p: Encoded(b"", ""), total=3, replay=big)


def test_an_outage_is_a_503_with_retry_after_and_recovers_without_a_restart() -> None:
    server = RedisServer().start()
    try:
        image_store = images(server.url)
        job_store = RedisJobStore(connect(server.url), retry_after_s=7)
        image_id = image_store.put(b"before", OPEN)
        server.stop()
        for call in (
            lambda: image_store.get(image_id, OPEN),
            lambda: image_store.put(b"during", OPEN),
            lambda: job_store.get("0" * 32),
            lambda: job_store.submit("x", lambda p: Encoded(b"", ""), total=1, replay=REPLAY),
        ):
            with pytest.raises(StoreUnavailable) as down:
                call()
            assert down.value.status == 503 and down.value.extra["retry_after"] in (5, 7)
            assert "Redis" in down.value.detail and "retry in" in down.value.detail
        server.start()  # same port, empty (no persistence in the tests)
        assert image_store.get(image_store.put(b"after", OPEN), OPEN) == b"after"
        with pytest.raises(NotFound):
            job_store.get("0" * 32)
    finally:
        server.stop()


def test_a_heartbeat_longer_than_the_lease_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="redis_heartbeat_s .* redis_lease_s"):
        Settings(redis_lease_s=2, redis_heartbeat_s=2)
    assert Settings(redis_lease_s=3, redis_heartbeat_s=0.25).redis_lease_s == 3
