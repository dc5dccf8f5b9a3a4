"""`bench/scale_out.py --dataset-job --kill-mid-slice`: what a replica killed mid-slice costs.

After the clean sliced run, the same job is submitted again through nginx and one replica is
killed in the middle of one of its slices, as tests/scaleout/test_shards.py does it: poll the
job until `shards.running` names a replica, SIGSTOP that replica, read the job again (from
the other replica: nginx would wait on the frozen one) and check a slice is still listed as
running on it, else SIGCONT and try again; then SIGKILL. The survivor is polled every 50 ms
until the job ends: the slice it starts again after the lease lapses, and how long it runs.
"""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

import httpx
import numpy as np

POLL_S = 0.05
FINISHED = ("succeeded", "failed", "cancelled")
TRIES = 200


def _owner(name: str, replicas: list[Any]) -> Any | None:
    """The replica a job record names (its name ends with the process id)."""
    found = [r for r in replicas if name.endswith(f"-{r.process.pid}")]
    return found[0] if found else None


def _freeze_running_slice(
    client: httpx.Client, job_id: str, replicas: list[Any], started: float
) -> tuple[int, Any, list[tuple[float, dict]]]:
    """SIGSTOP a replica in the middle of one of the job's slices: (the slice, the replica,
    the polls until then)."""
    samples: list[tuple[float, dict]] = []
    for _ in range(TRIES):
        while True:
            body = client.get(f"{replicas[0].url}/v1/jobs/{job_id}").json()
            if body.get("shards"):
                samples.append((time.perf_counter() - started, body["shards"]))
            if body["status"] in FINISHED:
                raise RuntimeError(f"the job ended {body['status']} before a slice was caught")
            if body.get("shards") and body["shards"]["running"]:
                break
            time.sleep(0.02)
        victim = _owner(body["shards"]["running"][0]["replica"], replicas)
        if victim is None:
            raise RuntimeError(f"no replica named {body['shards']['running'][0]['replica']}")
        (other,) = [r for r in replicas if r is not victim]
        os.kill(victim.process.pid, signal.SIGSTOP)
        frozen = client.get(f"{other.url}/v1/jobs/{job_id}").json()["shards"]["running"]
        mine = [r["shard"] for r in frozen if _owner(r["replica"], replicas) is victim]
        if mine:
            return mine[0], victim, samples
        os.kill(victim.process.pid, signal.SIGCONT)  # caught between two slices: again
    raise RuntimeError("never caught a replica in the middle of a slice")


def killed_job(base: str, analysis: str, replicas: list[Any]) -> dict:
    """Submit `analysis` through nginx at `base`, kill one of the two `replicas` mid-slice,
    and poll the survivor until the job ends."""
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        answer = client.post(base + analysis)
        answer.raise_for_status()
        job_id = answer.json()["id"]
        lost, victim, samples = _freeze_running_slice(client, job_id, replicas, started)
        killed_at = time.perf_counter() - started
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(timeout=30)
        (survivor,) = [r for r in replicas if r is not victim]
        while True:
            body = client.get(f"{survivor.url}/v1/jobs/{job_id}").json()
            now = time.perf_counter() - started
            if body.get("shards"):
                samples.append((now, body["shards"]))
            if body["status"] in FINISHED:
                break
            time.sleep(POLL_S)
    after = [(at, shards) for at, shards in samples if at > killed_at]
    mine = f"-{survivor.process.pid}"
    seen = [
        at
        for at, shards in after
        if any(r["shard"] == lost and r["replica"].endswith(mine) for r in shards["running"])
    ]
    return {
        "body": body,
        "wall": now,
        "lost": lost,
        "killed_at": killed_at,
        # First and last poll that saw the lost slice running on the survivor.
        "rerun_from": seen[0] if seen else math.nan,
        "rerun_to": seen[-1] if seen else math.nan,
    }


def _close(mine: float, theirs: float) -> bool:
    return math.isclose(mine, theirs, rel_tol=1e-4, abs_tol=1e-5)


def analysis_differences(mine: dict, clean: dict) -> list[str]:
    """Where two analysis results differ: counts and indices exactly, floats to 1e-4
    relative (the fields tests/scaleout/test_shards.py `_assert_same_analysis` compares)."""
    wrong = [
        key
        for key in ("images", "indices", "labels", "predicted", "confusion", "skipped")
        if mine[key] != clean[key]
    ]
    if not _close(mine["accuracy"], clean["accuracy"]):
        wrong.append("accuracy")
    if len(mine["layers"]) != len(clean["layers"]):
        return [*wrong, "layers"]
    for index, (layer, other) in enumerate(zip(mine["layers"], clean["layers"], strict=True)):
        for key in ("edges", "counts"):
            if layer["histogram"][key] != other["histogram"][key]:
                wrong.append(f"layers[{index}].histogram.{key}")
        if layer["values"] != other["values"]:
            wrong.append(f"layers[{index}].values")
        for key in ("mean", "std", "min", "max", "sparsity"):
            if not _close(layer[key], other[key]):
                wrong.append(f"layers[{index}].{key}")
    points = np.asarray(mine["embedding"]["points"], dtype=float)
    expected = np.asarray(clean["embedding"]["points"], dtype=float)
    if points.shape != expected.shape or not np.allclose(
        points, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max(initial=0.0))
    ):
        wrong.append("embedding.points")
    return wrong


def report(
    killed: dict, clean: dict, clean_wall: float, *, size: int, pictures: int, lease_s: float
) -> None:
    """Print the killed job's figures against the clean run's, and the two verdicts."""
    body, wall, lost = killed["body"], killed["wall"], killed["lost"]
    if body["status"] != "succeeded":
        print(f"killed mid-slice: the job ended {body['status']}: {body.get('error')}  FAIL")
        return
    rerun = body["shards"]["rerun"]
    slice_pictures = min(size, pictures - lost * size)
    extra = wall - clean_wall
    print(
        f"killed mid-slice (lease {lease_s:g} s): replica killed {killed['killed_at']:.2f} s "
        f"after POST in slice {lost} ({slice_pictures} pictures); wall {wall:.2f} s vs "
        f"{clean_wall:.2f} s clean = {extra:+.2f} s ({wall / clean_wall:.2f} x)"
    )
    waited = killed["rerun_from"] - killed["killed_at"]
    ran = killed["rerun_to"] - killed["rerun_from"] + POLL_S  # seen until its last poll
    # The sweep requeues the slice once its lease lapses; the survivor takes it after the
    # slices already queued. The lease costs wall time only where the survivor has nothing
    # else to run meanwhile: at most lease + rerun, when the lost slice is the last one.
    print(
        f"  breakdown: {extra:+.2f} s extra = {ran:.2f} s the rerun of slice {lost} "
        f"({slice_pictures} pictures) {extra - ran:+.2f} s rest (lease wait not hidden by "
        f"other slices, one replica fewer); slice {lost} started again {waited:.2f} s after "
        f"the kill (lease {lease_s:g} s, then behind the queued slices); bound when it is "
        f"the last slice: lease + rerun = {lease_s + ran:.2f} s"
    )
    print(
        f"  shards.rerun {rerun}: only the lost slice ran again: "
        f"{'PASS' if rerun == [lost] else 'FAIL'}"
    )
    wrong = analysis_differences(body["result"], clean["result"])
    print(
        f"  the answer equals the clean run's (counts exact, floats 1e-4): "
        f"{'PASS' if not wrong else 'FAIL ' + ', '.join(wrong)}"
    )
