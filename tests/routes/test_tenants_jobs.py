"""Jobs per tenant, over HTTP with the in-process store: another tenant's job, its result and
its cancellation answer 404 (as an unknown job does), the admin sees all, and a tenant's
concurrent jobs are capped with a 429 that names the limit."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import pytest
from fastapi.testclient import TestClient

from service.workers.tenancy import Tenant
from tests.insight_support import client
from tests.routes.test_jobs_api import wait_for

ALICE = {"Authorization": "Bearer alice-key-1"}
BOB = {"Authorization": "bearer bob-key-2"}
ROOT = {"Authorization": "Bearer root-key-3"}
MAXIMIZE = "/v1/models/digits/layers/relu2/maximize?channel=3&steps=8&seed=2&format=json"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with client(
        tmp_path_factory.mktemp("tenant-jobs"),
        api_keys="alice:alice-key-1,bob:bob-key-2,root:root-key-3",
        admin_tenants="root",
        tenant_max_jobs=2,
    ) as test_client:
        yield test_client


def finished(api: TestClient, location: str, key: dict[str, str]) -> dict:
    return wait_for(
        lambda: api.get(location, headers=key).json(),
        lambda body: body["status"] in ("succeeded", "failed", "cancelled"),
    )


def test_another_tenants_job_result_and_cancel_are_404(api: TestClient) -> None:
    accepted = api.post(MAXIMIZE + "&async=true", headers=ALICE)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    body = finished(api, location, ALICE)
    assert body["status"] == "succeeded", body
    unknown = api.get("/v1/jobs/" + "0" * 32, headers=BOB)
    for answer in (
        api.get(location, headers=BOB),
        api.get(location + "/result", headers=BOB),
        api.delete(location, headers=BOB),
    ):
        assert answer.status_code == 404
        assert answer.json()["detail"].replace(body["id"], "X") == unknown.json()["detail"].replace(
            "0" * 32, "X"
        )
    assert api.get(location, headers=ALICE).json()["status"] == "succeeded"  # not deleted
    seen = api.get(location, headers=ROOT)
    assert seen.status_code == 200 and seen.json()["result"] == body["result"]
    assert api.get(location + "/result", headers=ROOT).json() == body["result"]
    assert api.delete(location, headers=ROOT).status_code == 200  # the admin may forget it
    assert api.get(location, headers=ALICE).status_code == 404


def test_a_tenant_over_its_job_limit_gets_429_and_others_do_not(api: TestClient) -> None:
    # Two of alice's jobs that stay queued: a runner that never starts them.
    parked: list[futures.Future] = []

    def park(_call: object) -> futures.Future:
        parked.append(futures.Future())
        return parked[-1]

    store = api.app.state.jobs
    held = [
        store.submit("maximize", lambda p: None, total=1, runner=park, tenant=Tenant("alice"))
        for _ in range(2)
    ]
    try:
        refused = api.post(MAXIMIZE + "&async=true", headers=ALICE)
        assert refused.status_code == 429, refused.text
        assert refused.json()["tenant_max_jobs"] == 2 and "2 jobs" in refused.json()["detail"]
        accepted = api.post(MAXIMIZE + "&async=true", headers=BOB)
        assert accepted.status_code == 202
        assert finished(api, accepted.headers["location"], BOB)["status"] == "succeeded"
        assert api.post(MAXIMIZE + "&async=false", headers=ALICE).status_code == 200  # not a job
    finally:
        for view in held:
            assert api.delete(f"/v1/jobs/{view.id}", headers=ALICE).json()["status"] == "cancelled"
        for future in parked:
            future.set_result(None)
    again = api.post(MAXIMIZE + "&async=true", headers=ALICE)
    assert again.status_code == 202
    assert finished(api, again.headers["location"], ALICE)["status"] == "succeeded"
