"""Scale-out: feature maps by image_id through nginx (deploy/nginx.conf) in front of two
replicas sharing Redis, side by side with one replica behind the same nginx.

Each run uploads `--images` different pictures once, then closed-loop clients ask for
feature maps by image_id until `--requests` answers came back: req/s and p50/p99 latency.
nginx routes each image_id to one replica (consistent hash), so repeat views hit that
replica's activation cache. With one replica, both upstream slots of the config name it, so
the routing is the same and only the replica count differs. Both replicas run on this one
machine and share its cores: the figures say what the routing and Redis cost here, not
what two machines would give.

Run: .venv/bin/python bench/load.py --scale-out [--requests 400] [--clients 8]
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack

import httpx

from bench.common import photo_png, running_server

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
