"""The app with LAYERSCOPE_REDIS_URL, through its HTTP interface: a job submitted with an API
key and a multipart upload is replayed by the queue and gives the synchronous answer; a job
whose image went away fails with today's 404 as its reason; /readyz reports Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.app import create_app
from service.jobs.job_records import Encoded, Replay
from service.jobs.redis_jobs import RedisJobStore
from service.settings import Settings
from service.workers.tenancy import Tenant
from tests.helpers import digits_entry
from tests.redis_support import RedisServer, wait_for

KEY = {"Authorization": "Bearer s3cret"}
INVERT = "/v1/models/digits/layers/relu2/invert?steps=4&format=json&async=true"


@pytest.fixture
def api(redis_server: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    redis.Redis.from_url(redis_server.url).flushdb()
    models = tmp_path / "models.toml"
    models.write_text(digits_entry())
    settings = Settings(
        models=models,
        device="cpu",
        redis_url=redis_server.url,
        api_key="s3cret",
        redis_lease_s=3,
        redis_heartbeat_s=0.25,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def finished(api: TestClient, job_id: str) -> dict:
    def done() -> dict | None:
        body = api.get(f"/v1/jobs/{job_id}", headers=KEY).json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, f"job {job_id}", timeout=120)


def test_an_uploaded_image_job_runs_from_its_stored_request(
    api: TestClient, digit_pngs: list[bytes]
) -> None:
    files = {"image": ("d.png", digit_pngs[2], "image/png")}
    accepted = api.post(INVERT, files=files, headers=KEY)
    assert accepted.status_code == 202, accepted.text
    body = finished(api, accepted.json()["id"])
    assert body["status"] == "succeeded", body
    assert body["replica"] and body["attempts"] == 1
    assert len(body["result"]["loss"]) == 4
    direct = api.post(INVERT.replace("async=true", "async=false"), files=files, headers=KEY)
    assert body["result"] == direct.json()
    assert api.get(f"/v1/jobs/{body['id']}").status_code == 401  # the key is still required


def test_a_job_whose_image_is_gone_fails_with_the_404_as_its_reason(
    api: TestClient, redis_server: RedisServer
) -> None:
    # A job queued while its image existed, replayed after the image expired: queued here
    # straight through the app's store (and so its saq queue), as the route would have.
    store = api.app.state.jobs
    assert isinstance(store, RedisJobStore) and store.enqueue is not None
    path, query = INVERT.split("?")
    gone = f"{query}&image_id={'0' * 64}".encode()
    owner = Tenant("default")  # LAYERSCOPE_API_KEY's tenant
    replay = Replay("POST", path, gone, (), b"", owner)
    work = lambda progress: Encoded(b"", "")  # noqa: E731 - not run: the replay is
    view = store.submit("invert", work, total=4, replay=replay, tenant=owner)
    body = finished(api, view.id)
    assert body["status"] == "failed" and body["error_status"] == 404
    assert "unknown or was evicted" in body["error"]["detail"]


def test_readyz_reports_redis(api: TestClient) -> None:
    ready = api.get("/readyz").json()
    assert ready == {"status": "ready", "models": ["digits"], "redis": "ok"}
