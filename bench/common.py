"""Shared benchmark plumbing: a real server in a subprocess, timing helpers, sample inputs."""

from __future__ import annotations

import io
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """`layerscope serve` on a free port, ready when yielded; stopped on exit."""
    port = free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LAYERSCOPE_LOG_LEVEL": "warning",
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not become ready")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def median_seconds(fn: Callable[[], object], *, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def photo_png(size: tuple[int, int] | None = (224, 224)) -> tuple[Image.Image, bytes]:
    from sklearn.datasets import load_sample_images

    image = Image.fromarray(load_sample_images().images[0])
    if size is not None:
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return image, buffer.getvalue()


def report(name: str, ours: float, anchor: float, goal: float, anchor_name: str) -> None:
    ratio = ours / anchor
    verdict = "meets" if ratio <= goal else "MISSES"
    print(
        f"{name}: layerscope {ours * 1000:.1f} ms / {anchor_name} {anchor * 1000:.1f} ms "
        f"= {ratio:.3f} (goal <= {goal}, {verdict})"
    )
