"""Dataset jobs split into slices that both replicas run (LAYERSCOPE_SHARD_IMAGES): the answer
equals one process's, a replica killed mid-slice costs only its slice, a cancel at the other
replica stops every slice, and a Redis restart mid-job does not lose it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import LiveServer
from tests.redis_support import wait_for
from tests.scaleout.conftest import Cluster, finished, job

SHARD_IMAGES = 64  # digits: 1797 pictures -> 29 slices, batches of 64 instead of 256
ANALYSIS = "/v1/models/digits/datasets/digits/analysis?method=pca&seed=3"
SLICES = -(-1797 // SHARD_IMAGES)


def _cluster(folder: Path) -> Iterator[Cluster]:
    running = Cluster(folder, env={"LAYERSCOPE_SHARD_IMAGES": str(SHARD_IMAGES)}, persistent=True)
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shard_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Shared by the tests that leave every part running."""
    yield from _cluster(tmp_path_factory.mktemp("shards"))


@pytest.fixture
def own_shard_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """For a test that kills a replica or stops Redis."""
    yield from _cluster(tmp_path)


@pytest.fixture(scope="module")
def one_process(shard_cluster: Cluster) -> dict:
    """The same analysis by a process without Redis: one pass, no slices."""
    env = {"LAYERSCOPE_MODELS": str(shard_cluster.models), "LAYERSCOPE_LOG_LEVEL": "warning"}
    alone = LiveServer(env)
    try:
        alone.wait_ready()
        job_id = httpx.post(alone.url + ANALYSIS, timeout=60).json()["id"]
        body = finished(alone.url, job_id)
        assert body["status"] == "succeeded" and body["shards"] is None
        return body["result"]
    finally:
        alone.stop()


def _submit(url: str) -> str:
    answer = httpx.post(url + ANALYSIS, timeout=60)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def _assert_same_analysis(sharded: dict, whole: dict) -> None:
    for key in ("images", "indices", "labels", "predicted", "confusion", "accuracy", "skipped"):
        assert sharded[key] == whole[key], key
    for mine, one in zip(sharded["layers"], whole["layers"], strict=True):
        assert mine["histogram"]["edges"] == one["histogram"]["edges"]  # fixed before slicing
        counts, expected = np.asarray(mine["histogram"]["counts"]), one["histogram"]["counts"]
        assert counts.sum() == sum(expected) == mine["values"] == one["values"]
        # Batches of 64 round other than batches of 256: a value on a bin edge may move.
        assert np.abs(counts - expected).sum() <= 1e-5 * counts.sum()
        for key in ("mean", "std", "min", "max", "sparsity"):
            assert mine[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key
    points, expected = np.asarray(sharded["embedding"]["points"]), whole["embedding"]["points"]
    np.testing.assert_allclose(points, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def _running_slice(cluster: Cluster, job_id: str) -> tuple[int, LiveServer]:
    """Freeze a replica in the middle of one of the job's slices: (the slice, the replica)."""
    for _ in range(200):
        body = wait_for(
            lambda: (b := job(cluster.url, job_id))["shards"] and b["shards"]["running"] and b,
            "a slice to run",
            every=0.02,
        )
        replica = cluster.replica(body["shards"]["running"][0]["replica"])
        os.kill(replica.process.pid, signal.SIGSTOP)
        # Asked of the other replica: nginx would send every other poll to the frozen one.
        (other,) = [r for r in cluster.replicas if r is not replica]
        frozen = job(other.url, job_id)["shards"]["running"]
        mine = [r["shard"] for r in frozen if cluster.replica(r["replica"]) is replica]
        if mine:
            return mine[0], replica
        os.kill(replica.process.pid, signal.SIGCONT)  # caught between two slices: again
    raise AssertionError("never caught a replica in the middle of a slice")


def test_sharded_analysis_equals_one_process_and_both_replicas_ran_slices(
    shard_cluster: Cluster, one_process: dict
) -> None:
    cluster = shard_cluster
    job_id = _submit(cluster.url)
    body = finished(cluster.url, job_id)
    assert body["status"] == "succeeded", (body["error"], [r.output() for r in cluster.replicas])
    shards = body["shards"]
    assert shards["total"] == shards["done"] == SLICES and shards["running"] == []
    assert shards["rerun"] == []
    ran = {cluster.replica(name): count for name, count in shards["by_replica"].items()}
    assert len(ran) == 2 and sum(ran.values()) == SLICES, shards["by_replica"]
    assert body["progress"]["step"] == body["progress"]["total"] == 1797
    _assert_same_analysis(body["result"], one_process)


def test_a_replica_killed_mid_slice_costs_only_that_slice(
    own_shard_cluster: Cluster, one_process: dict
) -> None:
    cluster = own_shard_cluster
    job_id = _submit(cluster.url)
    lost, victim = _running_slice(cluster, job_id)
    killed_at = time.time()
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=30)
    (survivor,) = [r for r in cluster.replicas if r is not victim]
    body = finished(survivor.url, job_id)
    print(
        f"\nslice {lost} lost with its replica; the job ended {time.time() - killed_at:.2f} s later"
    )
    assert body["status"] == "succeeded", body
    assert body["shards"]["rerun"] == [lost]  # every other slice ran once
    assert body["shards"]["done"] == SLICES
    _assert_same_analysis(body["result"], one_process)


def test_cancel_at_the_other_replica_stops_every_slice(shard_cluster: Cluster) -> None:
    cluster = shard_cluster
    job_id = _submit(cluster.url)
    body = wait_for(
        lambda: (b := job(cluster.url, job_id))["shards"] and b["shards"]["running"] and b,
        "a slice to run",
        every=0.02,
    )
    runner = cluster.replica(body["shards"]["running"][0]["replica"])
    (other,) = [r for r in cluster.replicas if r is not runner]
    assert httpx.delete(f"{other.url}/v1/jobs/{job_id}").json()["cancel_requested"]
    body = finished(other.url, job_id)
    assert body["status"] == "cancelled"
    assert body["shards"]["done"] < SLICES and body["progress"]["step"] < 1797
    time.sleep(1.0)  # a slice still running would store its partial or move the step
    again = job(runner.url, job_id)
    assert again["shards"]["done"] == body["shards"]["done"]
    assert again["progress"]["step"] == body["progress"]["step"]
    assert httpx.get(f"{runner.url}/v1/jobs/{job_id}/result").status_code == 409


def test_redis_stopped_and_started_mid_job(own_shard_cluster: Cluster, one_process: dict) -> None:
    cluster = own_shard_cluster
    job_id = _submit(cluster.url)
    wait_for(
        lambda: (b := job(cluster.url, job_id))["shards"] and b["shards"]["done"] >= 2,
        "two slices done",
        every=0.02,
    )
    cluster.redis.stop()
    assert httpx.get(f"{cluster.url}/v1/jobs/{job_id}").status_code == 503
    time.sleep(2.0)
    cluster.redis.start()  # same port, its append-only file replayed
    body = finished(cluster.url, job_id)
    assert body["status"] == "succeeded", body
    assert body["shards"]["done"] == SLICES
    _assert_same_analysis(body["result"], one_process)
