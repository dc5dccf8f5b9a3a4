"""Load: a concurrency sweep and an overload run against a real server, on one machine.

For 1, 4 and 16 closed-loop clients: p50/p99 latency, throughput and error rate of
POST /feature-maps (resnet18, layer3, top:8, npy), next to the same work done
sequentially in-process (decode, forward, select, encode). Then an open-loop overload at
3x the measured capacity against a short queue: refused requests must be fast 503s and
the p99 of accepted ones bounded.

Run: .venv/bin/python bench/load.py [--seconds 8] [--device cpu]
With --scale-out: two replicas sharing Redis behind nginx, side by side with one
(bench/scale_out.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import photo_png, running_server  # noqa: E402

PARAMS = {"layers": "layer3", "channels": "top:8", "format": "npy"}


def in_process_rate(data: bytes, device: str, seconds: float) -> float:
    """Requests per second when the same work runs sequentially in this process."""
    import torch

    from model_registry.config import default_specs
    from model_registry.registry import load_model
    from service.engine.feature_maps import plan_feature_maps
    from service.engine.render import RenderOptions
    from service.workers.tasks import (
        capture_work,
        decode_batch,
        encode_feature_maps,
        feature_maps_from,
    )

    model = load_model(default_specs()[1], torch.device(device))
    plan = plan_feature_maps(model, layers=["layer3"], channels="top:8", reduce="none")
    _, execute = capture_work(model, plan)

    def one() -> None:
        pixels = decode_batch(model, [data], max_pixels=10**8)
        (outputs,) = execute([pixels])
        maps = feature_maps_from(model, pixels, outputs, plan)
        encode_feature_maps(maps, fmt="npy", options=RenderOptions())

    for _ in range(5):
        one()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        one()
        count += 1
    return count / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def closed_loop(base: str, data: bytes, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            started = time.perf_counter()
            answer = await client.post(
                "/v1/models/resnet18/feature-maps",
                params=PARAMS,
                files={"image": ("a.png", data, "image/png")},
            )
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    total = len(latencies) + errors
    return {
        "throughput": len(latencies) / elapsed,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "error_rate": errors / total if total else 0.0,
    }


async def open_loop(base: str, data: bytes, rate: float, seconds: float) -> dict[str, float]:
    accepted: list[float] = []
    refused: list[float] = []
    other = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal other
        started = time.perf_counter()
        answer = await client.post(
            "/v1/models/resnet18/feature-maps",
            params=PARAMS,
            files={"image": ("a.png", data, "image/png")},
        )
        elapsed = time.perf_counter() - started
        if answer.status_code == 200:
            accepted.append(elapsed)
        elif answer.status_code == 503 and answer.headers.get("retry-after"):
            refused.append(elapsed)
        else:
            other += 1

    async with httpx.AsyncClient(
        base_url=base, timeout=120, limits=httpx.Limits(max_connections=1000)
    ) as client:
        tasks = []
        started = time.perf_counter()
        sent = 0
        while time.perf_counter() - started < seconds:
            due = started + sent / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(client)))
            sent += 1
        await asyncio.gather(*tasks)
    return {
        "sent": sent,
        "accepted": len(accepted),
        "refused_503": len(refused),
        "other": other,
        "accepted_p50_ms": 1000 * percentile(accepted, 0.5),
        "accepted_p99_ms": 1000 * percentile(accepted, 0.99),
        "refused_p99_ms": 1000 * percentile(refused, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--queue", type=int, default=8, help="LAYERSCOPE_MAX_QUEUE for the overload run"
    )
    parser.add_argument(
        "--scale-out", action="store_true", help="nginx + Redis, two replicas next to one"
    )
    parser.add_argument("--requests", type=int, default=400, help="--scale-out: answers per run")
    parser.add_argument("--clients", type=int, default=8, help="--scale-out: concurrent clients")
    parser.add_argument("--images", type=int, default=16, help="--scale-out: uploaded images")
    args = parser.parse_args()
    if args.scale_out:
        from bench.scale_out import main as scale_out

        scale_out(
            requests=args.requests, clients=args.clients, images=args.images, device=args.device
        )
        return
    _, data = photo_png((224, 224))
    sequential = in_process_rate(data, args.device, args.seconds)
    print(f"device {args.device}; sequential in-process: {sequential:.1f} req/s")
    print(f"{'clients':>7} {'req/s':>8} {'x seq':>6} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    # No activation cache: every request here repeats one picture, which it would serve from memory.
    env = {
        "LAYERSCOPE_DEVICE": args.device,
        "LAYERSCOPE_MAX_QUEUE": "64",
        "LAYERSCOPE_ACTIVATION_CACHE_BYTES": "0",
    }
    capacity = 0.0
    with running_server(env) as base:
        for clients in (1, 4, 16):
            row = asyncio.run(closed_loop(base, data, clients, args.seconds))
            capacity = max(capacity, row["throughput"])
            print(
                f"{clients:>7} {row['throughput']:>8.1f} {row['throughput'] / sequential:>6.2f} "
                f"{row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['error_rate']:>7.1%}"
            )
    overload_env = {**env, "LAYERSCOPE_MAX_QUEUE": str(args.queue)}
    with running_server(overload_env) as base:
        row = asyncio.run(open_loop(base, data, 3 * capacity, args.seconds))
    print(
        f"overload at 3x capacity ({3 * capacity:.0f} req/s offered, queue {args.queue}): "
        f"{row['accepted']} accepted (p50 {row['accepted_p50_ms']:.0f} ms, p99 "
        f"{row['accepted_p99_ms']:.0f} ms), "
        f"{row['refused_503']} refused with 503 + Retry-After (p99 {row['refused_p99_ms']:.1f} "
        f"ms), {row['other']} other"
    )


if __name__ == "__main__":
    main()
