"""Two replicas behind nginx share uploads and jobs through Redis; a job survives losing the
replica that ran it; a Redis outage is a 503 with Retry-After, and the service recovers."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime

import httpx
import numpy as np

from tests.helpers import LiveServer
from tests.redis_support import wait_for
from tests.scaleout.conftest import Cluster, finished, job, npy

FM = "/v1/models/digits/feature-maps?layers=relu1&channels=0,3&format=npy"
MAXIMIZE = "/v1/models/digits/layers/relu2/maximize?channel=3&format=json"


def upload(url: str, data: bytes) -> str:
    answer = httpx.post(f"{url}/v1/images", files={"image": ("d.png", data, "image/png")})
    assert answer.status_code == 200, answer.text
    return answer.json()["image_id"]


def test_views_by_image_id_on_every_replica(cluster: Cluster, digit_pngs: list[bytes]) -> None:
    image_id = upload(cluster.url, digit_pngs[3])
    carried = httpx.post(cluster.url + FM, files={"image": ("d.png", digit_pngs[3], "image/png")})
    assert carried.status_code == 200
    expected = npy(carried.content)
    assert expected.shape[1] == 2 and np.abs(expected).sum() > 0
    for url in (cluster.url, *(replica.url for replica in cluster.replicas)):
        view = httpx.post(f"{url}{FM}&image_id={image_id}")
        assert view.status_code == 200, (url, view.text)
        np.testing.assert_array_equal(npy(view.content), expected)
    missing = httpx.post(f"{cluster.replicas[1].url}{FM}&image_id={'0' * 64}")
    assert missing.status_code == 404 and "unknown or was evicted" in missing.json()["detail"]


def test_jobs_through_nginx_give_the_synchronous_answer(cluster: Cluster) -> None:
    seeds = (1, 2, 3)
    accepted = [
        httpx.post(f"{cluster.url}{MAXIMIZE}&steps=12&seed={seed}&async=true") for seed in seeds
    ]
    assert [answer.status_code for answer in accepted] == [202, 202, 202]
    for seed, answer in zip(seeds, accepted, strict=True):
        job_id = answer.json()["id"]
        assert answer.headers["location"] == f"/v1/jobs/{job_id}"
        body = finished(cluster.url, job_id)
        assert body["status"] == "succeeded" and body["attempts"] == 1
        assert len(body["result"]["curve"]) == 12
        assert cluster.replica(body["replica"])  # one of the two replicas ran it
        results = {
            httpx.get(f"{url}/v1/jobs/{job_id}/result").content
            for url in (cluster.url, *(replica.url for replica in cluster.replicas))
        }
        sync = httpx.post(f"{cluster.replicas[0].url}{MAXIMIZE}&steps=12&seed={seed}&async=false")
        assert results == {sync.content}


def test_cancel_and_forget_from_the_other_replica(cluster: Cluster) -> None:
    answer = httpx.post(f"{cluster.url}{MAXIMIZE}&steps=4096&seed=1&async=true")
    job_id = answer.json()["id"]
    running = wait_for(
        lambda: (body := job(cluster.url, job_id))["progress"]["step"] >= 1 and body,
        "the job to run",
    )
    runner = cluster.replica(running["replica"])
    (other,) = [replica for replica in cluster.replicas if replica is not runner]
    assert httpx.delete(f"{other.url}/v1/jobs/{job_id}").json()["cancel_requested"]
    body = finished(other.url, job_id)
    assert body["status"] == "cancelled" and body["progress"]["step"] < 4096
    assert httpx.delete(f"{runner.url}/v1/jobs/{job_id}").status_code == 200  # forgotten
    assert httpx.get(f"{other.url}/v1/jobs/{job_id}").status_code == 404


def _started(body: dict) -> float:
    return datetime.fromisoformat(body["started_at"]).timestamp()


def _running_job(cluster: Cluster, seed: int) -> tuple[str, LiveServer, LiveServer]:
    """A long maximize job, once it runs: its id, the replica running it and the other one."""
    answer = httpx.post(f"{cluster.url}{MAXIMIZE}&steps=400&seed={seed}&async=true")
    job_id = answer.json()["id"]
    wait_for(lambda: job(cluster.url, job_id)["progress"]["step"] >= 1, "the job to run")
    runner = cluster.replica(job(cluster.url, job_id)["replica"])
    (other,) = [replica for replica in cluster.replicas if replica is not runner]
    return job_id, runner, other


def test_a_killed_replicas_job_finishes_on_the_other(own_cluster: Cluster) -> None:
    cluster = own_cluster
    job_id, victim, survivor = _running_job(cluster, seed=5)
    os.kill(victim.process.pid, signal.SIGSTOP)  # frozen: it can no longer finish the job
    frozen = job(survivor.url, job_id)
    assert frozen["status"] == "running" and cluster.replica(frozen["replica"]) is victim
    killed_at = time.time()
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=30)
    again = wait_for(
        lambda: (body := job(cluster.url, job_id))["attempts"] == 2 and body["started_at"] and body,
        "another replica to take the job over",
    )
    print(f"\nkilled replica's job ran again after {_started(again) - killed_at:.2f} s")
    body = finished(cluster.url, job_id)
    assert body["status"] == "succeeded" and body["attempts"] == 2
    assert cluster.replica(body["replica"]) is survivor
    sync = httpx.post(f"{survivor.url}{MAXIMIZE}&steps=400&seed=5&async=false", timeout=300)
    assert httpx.get(f"{cluster.url}/v1/jobs/{job_id}/result").content == sync.content


def test_redis_outage_is_503_with_retry_after_then_recovers(
    own_cluster: Cluster, digit_pngs: list[bytes]
) -> None:
    cluster = own_cluster
    image_id = upload(cluster.url, digit_pngs[1])
    job_id = httpx.post(f"{cluster.url}{MAXIMIZE}&steps=3&async=true").json()["id"]
    finished(cluster.url, job_id)
    cluster.redis.stop()
    carried = {"image": ("d.png", digit_pngs[1], "image/png")}
    needs_redis = [
        httpx.post(f"{cluster.url}/v1/images", files=carried),
        httpx.post(f"{cluster.url}{FM}&image_id={image_id}"),
        httpx.get(f"{cluster.url}/v1/jobs/{job_id}"),
        httpx.get(f"{cluster.url}/v1/jobs/{job_id}/result"),
        httpx.delete(f"{cluster.url}/v1/jobs/{job_id}"),
        httpx.post(f"{cluster.url}{MAXIMIZE}&steps=3&async=true"),
    ]
    for answer in needs_redis:
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        assert "Redis" in answer.json()["detail"]
    own_image = httpx.post(cluster.url + FM, files=carried)
    sync_job = httpx.post(f"{cluster.url}{MAXIMIZE}&steps=3&async=false")
    assert own_image.status_code == 200 and sync_job.status_code == 200
    for replica in cluster.replicas:
        ready = httpx.get(f"{replica.url}/readyz").json()
        assert ready["status"] == "degraded" and ready["redis"].startswith("unreachable")
    cluster.redis.start()  # same port, empty: the tests keep no snapshot
    for replica in cluster.replicas:
        wait_for(lambda r=replica: httpx.get(f"{r.url}/readyz").json()["status"] == "ready", "ok")
    image_id = upload(cluster.url, digit_pngs[1])
    for replica in cluster.replicas:
        assert httpx.post(f"{replica.url}{FM}&image_id={image_id}").status_code == 200
    accepted = httpx.post(f"{cluster.url}{MAXIMIZE}&steps=3&async=true")
    assert finished(cluster.url, accepted.json()["id"])["status"] == "succeeded"


def test_a_draining_replica_hands_its_job_back(own_cluster: Cluster) -> None:
    cluster = own_cluster
    job_id, leaving, staying = _running_job(cluster, seed=6)
    # SIGTERM: it drains, hands the job back and ends (uvicorn re-raises the signal then).
    assert leaving.stop() in (0, -signal.SIGTERM)
    body = finished(staying.url, job_id)
    assert body["status"] == "succeeded" and cluster.replica(body["replica"]) is staying
    assert body["attempts"] == 1  # handing back is not a lost attempt
