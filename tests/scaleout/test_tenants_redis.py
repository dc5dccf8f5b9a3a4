"""Tenants through Redis, against a real redis-server: two apps stand for two replicas. A
tenant's images and jobs are answered by every replica to that tenant (and the admin) only;
ids are shared by the replicas; per-tenant job and byte limits hold in the shared stores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from model_registry.errors import NotFound, PayloadTooLarge, TooManyJobs
from service.app import create_app
from service.jobs.job_records import Encoded, Replay
from service.jobs.redis_jobs import RedisJobStore
from service.settings import Settings
from service.workers.redis_images import RedisImageStore
from service.workers.redis_link import connect
from service.workers.tenancy import Tenant
from tests.helpers import digits_entry, files, load_npy
from tests.redis_support import RedisServer, wait_for

ALICE = {"Authorization": "Bearer alice-key-1"}
BOB = {"Authorization": "bearer bob-key-2"}
ROOT = {"Authorization": "BEARER root-key-3"}
FM = "/v1/models/digits/feature-maps?layers=relu2&fmt=npy&image_id="
INVERT = "/v1/models/digits/layers/relu2/invert?steps=3&format=json&async=true&image_id="
REPLAY = Replay("POST", "/v1/models/digits/layers/relu2/maximize", b"steps=3", (), b"")


@pytest.fixture
def url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.close()


@pytest.fixture
def replicas(url: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    models = tmp_path / "models.toml"
    models.write_text(digits_entry())
    settings = Settings(
        models=models,
        device="cpu",
        redis_url=url,
        api_keys="alice:alice-key-1,bob:bob-key-2,root:root-key-3",
        admin_tenants="root",
        redis_lease_s=3,
        redis_heartbeat_s=0.25,
    )
    with ExitStack() as stack:
        first = stack.enter_context(TestClient(create_app(settings)))
        second = stack.enter_context(TestClient(create_app(settings)))
        yield first, second


def upload(api: TestClient, data: bytes, key: dict[str, str]) -> str:
    answer = api.post("/v1/images", files=files(data), headers=key)
    assert answer.status_code == 200, answer.text
    return answer.json()["image_id"]


def test_an_image_is_its_tenants_on_every_replica(
    replicas: tuple[TestClient, TestClient], digit_pngs: list[bytes]
) -> None:
    first, second = replicas
    image_id = upload(first, digit_pngs[3], ALICE)
    mine = second.post(FM + image_id, headers=ALICE)
    assert mine.status_code == 200
    direct = second.post(FM.split("&image_id")[0], files=files(digit_pngs[3]), headers=BOB)
    np.testing.assert_array_equal(load_npy(mine.content), load_npy(direct.content))
    assert second.post(FM + image_id, headers=BOB).status_code == 404
    assert first.post(FM + image_id, headers=BOB).status_code == 404
    assert second.post(FM + image_id, headers=ROOT).content == mine.content
    # The replicas share the id secret (stored once in Redis): the same picture, the same id.
    assert upload(second, digit_pngs[3], ALICE) == image_id
    assert upload(second, digit_pngs[3], BOB) != image_id


def test_a_job_is_its_tenants_and_runs_as_its_tenant(
    replicas: tuple[TestClient, TestClient], digit_pngs: list[bytes]
) -> None:
    first, second = replicas
    image_id = upload(first, digit_pngs[5], ALICE)
    accepted = first.post(INVERT + image_id, headers=ALICE)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]

    def done() -> dict | None:
        body = second.get(location, headers=ALICE).json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    body = wait_for(done, "alice's job", timeout=120)
    # The replica that ran it read alice's image: the stored request kept her tenant.
    assert body["status"] == "succeeded", body
    unknown = second.get("/v1/jobs/" + "0" * 32, headers=BOB).json()["detail"]
    for answer in (
        second.get(location, headers=BOB),
        first.get(location + "/result", headers=BOB),
        second.delete(location, headers=BOB),
    ):
        assert answer.status_code == 404
        assert answer.json()["detail"].replace(body["id"], "X") == unknown.replace("0" * 32, "X")
    assert first.get(location, headers=ALICE).json()["result"] == body["result"]
    assert second.get(location + "/result", headers=ROOT).json() == body["result"]
    assert first.post(INVERT + image_id, headers=BOB).status_code == 404  # her image


def test_cancel_by_another_tenant_leaves_the_job_alone(url: str) -> None:
    store = RedisJobStore(connect(url))
    alice = Tenant("alice")
    view = store.submit(
        "maximize", lambda p: Encoded(b"", ""), total=3, replay=REPLAY, tenant=alice
    )
    for call in (store.get, store.result, store.delete):
        with pytest.raises(NotFound):
            call(view.id, Tenant("bob"))
    assert store.get(view.id, alice).status == "queued"
    assert not store.get(view.id, alice).cancel_requested
    assert store.delete(view.id, Tenant("root", admin=True)).status == "cancelled"


def test_a_tenants_unfinished_jobs_are_capped_in_redis(url: str) -> None:
    store = RedisJobStore(connect(url), tenant_max_jobs=2)
    alice, bob = Tenant("alice"), Tenant("bob")

    def submit(tenant: Tenant) -> str:
        work = lambda p: Encoded(b"", "")  # noqa: E731 - never run: nothing consumes the queue
        return store.submit("maximize", work, total=3, replay=REPLAY, tenant=tenant).id

    first, _ = submit(alice), submit(alice)
    with pytest.raises(TooManyJobs) as refused:
        submit(alice)
    assert refused.value.status == 429 and refused.value.extra["tenant_max_jobs"] == 2
    submit(bob)  # bob has his own two
    store.delete(first, alice)  # cancelled: finished, so it no longer counts
    submit(alice)


def test_a_tenant_over_its_bytes_in_redis_loses_its_own_oldest(url: str) -> None:
    store = RedisImageStore(connect(url), max_images=100, max_bytes=1 << 20, ttl_s=60)
    store.tenant_max_bytes = 1000
    alice, bob = Tenant("alice"), Tenant("bob")
    bobs = store.put(b"b" * 400, bob)
    a1, a2 = store.put(b"1" * 400, alice), store.put(b"2" * 400, alice)
    store.get(a1, alice)  # a1 is now alice's most recently used
    a3 = store.put(b"3" * 400, alice)  # 1200 > 1000: her least recently used (a2) goes
    with pytest.raises(NotFound):
        store.get(a2, alice)
    assert store.get(a1, alice) == b"1" * 400 and store.get(a3, alice) == b"3" * 400
    assert store.get(bobs, bob) == b"b" * 400
    assert (store.owned_bytes("alice"), store.owned_bytes("bob")) == (800, 400)
    with pytest.raises(PayloadTooLarge) as too_big:
        store.put(b"x" * 1001, alice)
    assert too_big.value.extra["tenant_max_image_bytes"] == 1000


def test_a_configured_id_secret_fixes_the_ids(url: str) -> None:
    secret = b"0123456789abcdef"
    one = RedisImageStore(connect(url), max_images=8, max_bytes=1 << 20, ttl_s=60, secret=secret)
    other = RedisImageStore(connect(url), max_images=8, max_bytes=1 << 20, ttl_s=60)
    alice = Tenant("alice")
    image_id = one.put(b"picture", alice)
    assert other.put(b"picture", alice) != image_id  # Redis's own secret is another one
    assert other.get(image_id, alice) == b"picture"  # stored ids resolve either way
