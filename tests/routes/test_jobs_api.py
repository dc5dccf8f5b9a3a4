"""Jobs over HTTP: 202 + Location, polling with progress, results, cancellation, limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.insight_support import client, digit_pngs, jpeg, photo

MAXIMIZE = "/v1/models/digits/layers/relu2/maximize?channel=3&steps=40&seed=2"
# Slow enough to be caught running: tens of seconds on a CPU, cancelled long before.
LONG = "/v1/models/tinyres/layers/layer4/maximize?channel=0&steps=600&size=128&async=true"


def wait_for(
    fetch: Callable[[], dict], done: Callable[[dict], bool], *, limit_s: float = 60.0
) -> dict:
    """Poll until `done(body)`; a bound against hangs, not a timing assertion."""
    end = time.monotonic() + limit_s
    while True:
        body = fetch()
        if done(body) or time.monotonic() > end:
            return body
        time.sleep(0.01)


def poll(api: TestClient, location: str, *statuses: str) -> dict:
    return wait_for(lambda: api.get(location).json(), lambda body: body["status"] in statuses)


def test_async_maximize_gives_the_synchronous_answer(api: TestClient) -> None:
    accepted = api.post(MAXIMIZE + "&async=true")
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    assert location == f"/v1/jobs/{accepted.json()['id']}"
    assert accepted.json()["kind"] == "maximize" and accepted.json()["progress"]["total"] == 40
    body = poll(api, location, "succeeded", "failed")
    assert body["status"] == "succeeded", body
    assert body["progress"] == {"step": 40, "total": 40, "fraction": 1.0}
    assert body["eta_s"] == 0 and body["finished_at"] and body["result"] is None
    result = api.get(body["result_url"])
    assert result.status_code == 200 and result.headers["content-type"] == "image/png"
    assert result.content == api.post(MAXIMIZE + "&async=false").content  # same seed, same image


def test_json_results_are_inlined(api: TestClient) -> None:
    accepted = api.post(MAXIMIZE + "&async=true&format=json")
    body = poll(api, accepted.headers["location"], "succeeded", "failed")
    assert body["result"]["layer"] == "relu2" and len(body["result"]["curve"]) == 40
    inverted = api.post(
        "/v1/models/digits/layers/relu2/invert?async=true&steps=30&format=json",
        files=[("image", ("a.jpg", jpeg(photo()), "image/jpeg"))],
    )
    assert inverted.status_code == 202
    body = poll(api, inverted.headers["location"], "succeeded", "failed")
    assert len(body["result"]["distance"]) == 31


def test_async_embedding_reports_chunks(api: TestClient) -> None:
    uploads, _ = digit_pngs(130)
    files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(uploads)]
    accepted = api.post("/v1/models/digits/embedding?async=true&method=pca", files=files)
    assert accepted.status_code == 202
    assert accepted.json()["progress"]["total"] == 4  # 3 chunks of up to 64 images + the projection
    body = poll(api, accepted.headers["location"], "succeeded", "failed")
    assert len(body["result"]["points"]) == 130


def test_validation_happens_before_any_job(api: TestClient) -> None:
    response = api.post("/v1/models/digits/layers/relu2/maximize?channel=99&async=true")
    assert response.status_code == 422 and "location" not in response.headers


def test_failed_job_carries_the_error(api: TestClient) -> None:
    accepted = api.post(
        "/v1/models/digits/layers/relu2/invert?async=true&steps=3",
        files=[("image", ("x.png", b"not an image at all", "image/png"))],
    )
    body = poll(api, accepted.headers["location"], "failed", "succeeded")
    assert body["status"] == "failed" and body["error_status"] == 415
    assert body["error"]["field"] == "image" and body["result_url"] is None
    conflict = api.get(accepted.headers["location"] + "/result")
    assert conflict.status_code == 409 and conflict.json()["status"] == "failed"


def test_unknown_job(api: TestClient) -> None:
    for method in ("get", "delete"):
        response = getattr(api, method)("/v1/jobs/0123456789abcdef")
        assert response.status_code == 404 and response.json()["field"] == "job_id"
    assert api.get("/v1/jobs/0123456789abcdef/result").status_code == 404


def test_delete_cancels_queued_and_running_jobs(api: TestClient) -> None:
    running = api.post(LONG)
    queued = api.post(LONG)
    assert running.status_code == queued.status_code == 202
    running_url, queued_url = running.headers["location"], queued.headers["location"]
    first = wait_for(lambda: api.get(running_url).json(), lambda b: b["progress"]["step"] > 0)
    assert first["status"] == "running" and first["eta_s"] is not None
    assert api.get(queued_url).json()["status"] == "queued"
    assert api.get(running_url + "/result").status_code == 409
    assert api.delete(queued_url).json()["status"] == "cancelled"
    stopping = api.delete(running_url).json()
    assert stopping["cancel_requested"] is True
    body = poll(api, running_url, "cancelled", "succeeded", "failed")
    assert body["status"] == "cancelled" and body["progress"]["step"] < 600
    assert api.delete(running_url).status_code == 200  # a finished job: forgotten
    assert api.get(running_url).status_code == 404


def test_estimate_decides_when_async_is_unset(tmp_path: Path) -> None:
    with client(tmp_path, sync_budget_s=0.0) as eager:
        assert eager.post(MAXIMIZE).status_code == 202
        assert eager.post(MAXIMIZE + "&async=false").status_code == 200
    with client(tmp_path) as default:  # 40 steps on a 32x32 digit: far below the budget
        assert default.post(MAXIMIZE).status_code == 200
        # resnet at 128 px, 600 steps: estimated in minutes, so a job
        big = default.post(LONG.replace("&async=true", ""))
        assert big.status_code == 202
        default.delete(big.headers["location"])


def test_jobs_are_bounded_and_expire(tmp_path: Path) -> None:
    with client(
        tmp_path, max_jobs=1, job_ttl_s=0.3, max_insight_steps=600, max_insight_size=128
    ) as small:
        first = small.post(LONG)
        refused = small.post(LONG)
        assert refused.status_code == 429 and refused.headers["retry-after"]
        small.delete(first.headers["location"])
        poll(small, first.headers["location"], "cancelled")
        done = small.post(MAXIMIZE + "&async=true")
        assert done.status_code == 202  # the cancelled job's slot was reused
        location = done.headers["location"]
        poll(small, location, "succeeded")
        gone = wait_for(
            lambda: {"code": small.get(location).status_code}, lambda b: b["code"] == 404
        )
        assert gone["code"] == 404


def test_shutdown_stops_running_jobs(tmp_path: Path) -> None:
    with client(tmp_path, max_insight_steps=600, max_insight_size=128) as app_client:
        accepted = app_client.post(LONG)
        wait_for(
            lambda: app_client.get(accepted.headers["location"]).json(),
            lambda b: b["status"] == "running",
        )
        store = app_client.app.state.jobs  # type: ignore[attr-defined]
    assert store.get(accepted.json()["id"]).status == "cancelled"


def test_synchronous_answers_have_the_same_time_limit(tmp_path: Path) -> None:
    with client(tmp_path, job_timeout_s=0.001) as strict:
        response = strict.post(MAXIMIZE + "&async=false")
        assert response.status_code == 504 and response.json()["field"] == "async"
