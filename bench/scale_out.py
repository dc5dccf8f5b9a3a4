"""Scale-out: two replicas sharing Redis, each mode against one replica in the same run.

Feature maps (the default): nginx (deploy/nginx.conf) in front of two replicas sharing
Redis, side by side with one replica behind the same nginx. Each run uploads `--images`
different pictures once, then closed-loop clients ask for feature maps by image_id until
`--requests` answers came back: req/s and p50/p99 latency. nginx routes each image_id to one
replica (consistent hash), so repeat views hit that replica's activation cache. With one
replica, both upstream slots of the config name it, so the routing is the same and only the
replica count differs.

--dataset-job: the digits analysis (PCA, all 1,797 pictures) as a job split into slices of
`--shard-images` (LAYERSCOPE_SHARD_IMAGES) that both replicas run, polled through nginx
every 50 ms, against the same job in one process without Redis (the anchor) and on one
replica with Redis (the same slices, one after another: what slicing costs). Each side
runs the job once unmeasured first, so that every process has loaded the set. Goals: each
replica runs >= 35% of the slices; the merge takes <= 5% of the job. It also prints each
replica's pictures/s while it ran slices (from the polls) and what N such replicas would
take for 50,000 pictures.

--kill-mid-slice (with --dataset-job): after the clean run, the same job again on the same
two replicas, one of them SIGKILLed in the middle of one of its slices (bench/kill_mid_slice.py):
the extra wall time against the clean run, split into the wait until the lease lapses and
the sweep gives the slice away, and the slice's rerun; PASS/FAIL on "only the lost slice ran
again" (`shards.rerun`) and on "the answer equals the clean run's". --lease-s and
--heartbeat-s set LAYERSCOPE_REDIS_LEASE_S / _HEARTBEAT_S on the replicas (defaults 30 and
5, the service's).

Both replicas run on this one machine and share its cores: the figures say what the
routing, the slicing and Redis cost here, not what two machines would give.

Run: .venv/bin/python bench/load.py --scale-out [--requests 400] [--clients 8]
     .venv/bin/python bench/scale_out.py --dataset-job [--shard-images 128] [--device cpu]
     .venv/bin/python bench/scale_out.py --dataset-job --kill-mid-slice --shard-images 128 \
         --lease-s 5 --heartbeat-s 1
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import photo_png, running_server  # noqa: E402

PARAMS = {"layers": "layer3", "channels": "top:8", "format": "npy"}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _by_image_id(base: str, ids: list[str], requests: int, clients: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests:
            image_id = ids[sent % len(ids)]
            sent += 1
            started = time.perf_counter()
            params = {**PARAMS, "image_id": image_id}
            answer = await client.post("/v1/models/resnet18/feature-maps", params=params)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "throughput": len(latencies) / elapsed,
        "p50_ms": 1000 * _percentile(latencies, 0.5),
        "p99_ms": 1000 * _percentile(latencies, 0.99),
        "statuses": statuses,
    }


def _run(replicas: int, images: list[bytes], requests: int, clients: int, device: str) -> dict:
    from tests.redis_support import Nginx, RedisServer

    redis = RedisServer().start()
    nginx = None
    try:
        env = {"LAYERSCOPE_DEVICE": device, "LAYERSCOPE_REDIS_URL": redis.url}
        with ExitStack() as stack:
            bases = [stack.enter_context(running_server(env)) for _ in range(replicas)]
            ports = [int(base.rsplit(":", 1)[1]) for base in bases]
            nginx = Nginx((ports * 2)[:2]).start()
            ids = []
            for data in images:
                answer = httpx.post(
                    f"{nginx.url}/v1/images", files={"image": ("a.png", data, "image/png")}
                )
                answer.raise_for_status()
                ids.append(answer.json()["image_id"])
            return asyncio.run(_by_image_id(nginx.url, ids, requests, clients))
    finally:
        if nginx is not None:
            nginx.stop()
        redis.stop()


def main(*, requests: int, clients: int, images: int, device: str) -> None:
    pictures = [photo_png((224 + i, 224))[1] for i in range(images)]
    print(
        f"feature maps by image_id through nginx: {images} images, {requests} requests, "
        f"{clients} clients, device {device}"
    )
    print(f"{'replicas':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for replicas in (1, 2):
        row = _run(replicas, pictures, requests, clients, device)
        print(
            f"{replicas:>8} {row['throughput']:>8.1f} {row['p50_ms']:>8.1f} "
            f"{row['p99_ms']:>8.1f}  {row['statuses']}"
        )


ANALYSIS = "/v1/models/digits/datasets/digits/analysis?method=pca&seed=0"
PICTURES = 1797  # the built-in digits set
SHARE_GOAL, MERGE_GOAL = 0.35, 0.05
PROJECTED = 50_000
POLL_S = 0.05


def _job(base: str) -> tuple[dict, float, list[tuple[float, dict]]]:
    """Submit the analysis and poll it: (its final body, wall seconds from POST to the finished
    body, (seconds since POST, shards) at every poll)."""
    samples: list[tuple[float, dict]] = []
    with httpx.Client(base_url=base, timeout=60) as client:
        started = time.perf_counter()
        answer = client.post(ANALYSIS)
        answer.raise_for_status()
        job_id = answer.json()["id"]
        while True:
            body = client.get(f"/v1/jobs/{job_id}").json()
            now = time.perf_counter() - started
            if body.get("shards"):
                samples.append((now, body["shards"]))
            if body["status"] in ("succeeded", "failed", "cancelled"):
                if body["status"] != "succeeded":
                    raise RuntimeError(f"the job ended {body['status']}: {body.get('error')}")
                return body, now, samples
            time.sleep(POLL_S)


def _busy(samples: list[tuple[float, dict]], size: int) -> dict[str, dict[str, float]]:
    """Per replica: seconds it was seen running a slice (each poll counts until the next) and
    the pictures of the slices it was last seen running."""
    seconds: dict[str, float] = {}
    owner: dict[int, str] = {}
    for (at, shards), (then, _) in zip(samples, samples[1:], strict=False):
        for run in shards["running"]:
            seconds[run["replica"]] = seconds.get(run["replica"], 0.0) + then - at
            owner[run["shard"]] = run["replica"]
    pictures: dict[str, float] = {}
    for shard, replica in owner.items():
        pictures[replica] = pictures.get(replica, 0) + min(size, PICTURES - shard * size)
    return {r: {"busy_s": seconds[r], "pictures": pictures.get(r, 0)} for r in seconds}


def _dataset_cluster(
    env: dict[str, str], replicas: int, *, kill: bool = False
) -> tuple[dict, float, list[tuple[float, dict]], dict | None]:
    """Warm-up, then the measured job; with `kill`, then the same job again with one replica
    killed mid-slice (the last thing this cluster does: one replica is left)."""
    from bench.kill_mid_slice import killed_job
    from tests.helpers import serving
    from tests.redis_support import Nginx, RedisServer

    redis = RedisServer().start()
    nginx = None
    try:
        with ExitStack() as stack:
            replica_env = {
                "LAYERSCOPE_LOG_LEVEL": "warning",
                **env,
                "LAYERSCOPE_REDIS_URL": redis.url,
            }
            lives = [stack.enter_context(serving(replica_env)) for _ in range(replicas)]
            ports = [live.port for live in lives]
            nginx = Nginx((ports * 2)[:2]).start()
            _job(nginx.url)  # warm-up: both replicas load the set and run their first slices
            body, wall, samples = _job(nginx.url)
            killed = killed_job(nginx.url, ANALYSIS, lives) if kill else None
            return body, wall, samples, killed
    finally:
        if nginx is not None:
            nginx.stop()
        redis.stop()


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def dataset_job(
    *,
    shard_images: int,
    device: str,
    replicas: int,
    kill: bool = False,
    lease_s: float = 30.0,
    heartbeat_s: float = 5.0,
) -> None:
    from bench.kill_mid_slice import report
    from tests.helpers import digits_entry

    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models.toml"
        models.write_text(digits_entry())
        env = {"LAYERSCOPE_DEVICE": device, "LAYERSCOPE_MODELS": str(models)}
        with running_server(env) as alone:
            _job(alone)  # warm-up, as the cluster's
            one, one_wall, _ = _job(alone)
        env["LAYERSCOPE_SHARD_IMAGES"] = str(shard_images)
        env["LAYERSCOPE_REDIS_LEASE_S"] = f"{lease_s:g}"
        env["LAYERSCOPE_REDIS_HEARTBEAT_S"] = f"{heartbeat_s:g}"
        single, single_wall, _, _ = _dataset_cluster(env, 1)
        body, wall, samples, killed = _dataset_cluster(env, 2, kill=kill)
    shards = body["shards"]
    total, elapsed = shards["total"], body["elapsed_s"]
    print(
        f"digits analysis (PCA, {PICTURES} pictures), device {device}, slices of "
        f"{shard_images}: {total} slices on 2 replicas behind nginx"
    )
    first = samples[0][0] if samples else float("nan")
    print(
        f"wall {wall:.2f} s from POST to the finished body (job elapsed_s {elapsed:.2f} s; "
        f"slices planned {first:.2f} s after POST); one process without Redis: "
        f"{one_wall:.2f} s (elapsed_s {one['elapsed_s']:.2f} s)"
    )
    print(
        f"one replica with Redis, the same {single['shards']['total']} slices: "
        f"{single_wall:.2f} s = {single_wall / one_wall:.2f} x one process (what slicing costs)"
    )
    print(
        f"two replicas / one process: {wall / one_wall:.2f} x the time "
        f"(speed-up {one_wall / wall:.2f}); reruns: {shards['rerun'] or 'none'}"
    )
    busy = _busy(samples, shard_images)
    rates = []
    for replica, count in sorted(shards["by_replica"].items()):
        share = count / total
        seen = busy.get(replica, {"busy_s": 0.0, "pictures": 0})
        rate = seen["pictures"] / seen["busy_s"] if seen["busy_s"] else float("nan")
        rates.append(rate)
        print(
            f"  {replica}: {count} slices = {share:.0%} (goal >= {SHARE_GOAL:.0%}: "
            f"{_verdict(share >= SHARE_GOAL)}); seen running {seen['pictures']} pictures "
            f"for {seen['busy_s']:.2f} s = {rate:.0f} pictures/s while busy, "
            f"{seen['pictures'] / wall:.0f} over the job's wall"
        )
    if len(shards["by_replica"]) < 2:
        print(f"  only one replica ran slices: share goal {_verdict(False)}")
    merge = shards["merge_s"] or 0.0
    print(
        f"merge {merge:.3f} s = {merge / elapsed:.1%} of the job "
        f"(goal <= {MERGE_GOAL:.0%}: {_verdict(merge / elapsed <= MERGE_GOAL)})"
    )
    per_replica = sum(rates) / len(rates) if rates else float("nan")
    slices_s = PROJECTED / (replicas * per_replica)
    merge_scaled = merge * PROJECTED / PICTURES  # the merge gathers every picture's features
    print(
        f"projection: {replicas} replicas at {per_replica:.0f} pictures/s each (measured here, "
        f"device {device}) would take {slices_s:.1f} s of slices + about {merge_scaled:.1f} s of "
        f"merge (scaled linearly) for {PROJECTED:,} pictures"
    )
    if killed is not None:
        report(killed, body, wall, size=shard_images, pictures=PICTURES, lease_s=lease_s)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset-job", action="store_true", help="the sharded digits analysis")
    parser.add_argument("--shard-images", type=int, default=256, help="LAYERSCOPE_SHARD_IMAGES")
    parser.add_argument("--project-replicas", type=int, default=8, help="replicas projected")
    parser.add_argument(
        "--kill-mid-slice",
        action="store_true",
        help="dataset job: then run it again and SIGKILL one replica in the middle of a slice",
    )
    parser.add_argument(
        "--lease-s", type=float, default=30.0, help="LAYERSCOPE_REDIS_LEASE_S of the replicas"
    )
    parser.add_argument(
        "--heartbeat-s",
        type=float,
        default=5.0,
        help="LAYERSCOPE_REDIS_HEARTBEAT_S of the replicas (below --lease-s)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=400, help="feature maps: answers per run")
    parser.add_argument("--clients", type=int, default=8, help="feature maps: clients")
    parser.add_argument("--images", type=int, default=16, help="feature maps: uploaded images")
    arguments = parser.parse_args()
    if arguments.heartbeat_s >= arguments.lease_s:
        parser.error("--heartbeat-s must be below --lease-s (the service refuses to start)")
    return arguments


if __name__ == "__main__":
    arguments = _arguments()
    if arguments.dataset_job:
        dataset_job(
            shard_images=arguments.shard_images,
            device=arguments.device,
            replicas=arguments.project_replicas,
            kill=arguments.kill_mid_slice,
            lease_s=arguments.lease_s,
            heartbeat_s=arguments.heartbeat_s,
        )
    else:
        main(
            requests=arguments.requests,
            clients=arguments.clients,
            images=arguments.images,
            device=arguments.device,
        )
