"""Shared benchmark plumbing: a real server in a subprocess, timing helpers, sample inputs."""

from __future__ import annotations

import http.client
import io
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
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


def distinct_pictures(count: int, size: int = 224) -> list[bytes]:
    """`count` different PNG pictures (crops of scikit-learn's two photos), so that no two
    calls send the same picture and no cache can answer one."""
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(img) for img in load_sample_images().images]  # 640 x 427 each
    if count > 480:
        raise ValueError(f"at most 480 distinct pictures, not {count}")
    out = []
    for i in range(count):
        photo = photos[i % 2]
        # 240 different crop corners per photo, every crop inside the photo
        left, top = (13 * (i // 2)) % 240, (7 * (i // 2)) % 27
        crop = photo.crop((left, top, left + 400, top + 400)).resize(
            (size, size), Image.Resampling.BILINEAR
        )
        buffer = io.BytesIO()
        crop.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def interleaved_medians(
    runs: dict[str, Callable[[int], object]], *, rounds: int, block: int = 6
) -> dict[str, float]:
    """Median seconds per call of each `runs[name](i)`, measured in alternating blocks.

    Each round runs `block` calls of every entry in turn (call index i, a different input
    each time) and drops the first call of each block, which pays for switching processes
    and caches. Alternating blocks spread the machine's drifts (other load, frequency) over
    every entry alike, which is what makes the ratios repeat from run to run.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    index = 0
    for _ in range(rounds):
        for name, fn in runs.items():
            for position in range(block):
                start = time.perf_counter()
                fn(index)
                elapsed = time.perf_counter() - start
                index += 1
                if position:
                    times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def model_tensor(data: bytes, spec: object) -> object:
    """A picture's bytes -> the [1, C, H, W] tensor the server computes for the model `spec`
    (its resize, crop and normalization), so both sides of a ratio run the same input."""
    import torch

    from service.engine.images import preprocess

    batch = preprocess([Image.open(io.BytesIO(data))], spec, torch.device("cpu"))  # type: ignore[arg-type]
    return batch.contiguous()  # as a script's ToTensor + Normalize gives it


class KeepAliveClient:
    """Requests on one keep-alive `http.client` connection, the lightest client at hand (httpx
    spends 0.5-1 ms of its own per call); uploads go as multipart/form-data field `image`."""

    def __init__(self, base: str) -> None:
        address = urllib.parse.urlsplit(base)
        self.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)

    def request(self, method: str, path: str, upload: tuple[str, bytes] | None = None) -> bytes:
        """The answer's body; `upload` is (media type, bytes). Raises on any status but 200."""
        body, headers = b"", {"Content-Length": "0"}
        if upload is not None:
            body, kind = _multipart(*upload)
            headers = {"Content-Type": kind, "Content-Length": str(len(body))}
        self.connection.request(method, path, body=body, headers=headers)
        answer = self.connection.getresponse()
        content = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{path}: {answer.status} {content[:200]!r}")
        return content


def _multipart(media_type: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="picture"\r\n'
        f"Content-Type: {media_type}\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def photo_jpeg(size: int) -> tuple[bytes, object]:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    image = Image.fromarray(load_sample_images().images[0]).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    buffer.seek(0)
    return buffer.getvalue(), Image.open(buffer).convert("RGB")  # what the server decodes


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1]
    )


@dataclass(frozen=True)
class Timing:
    best: float
    median: float


def interleaved(
    runs: dict[str, Callable[[], object]], rounds: int, block: int, warmup: int = 1
) -> dict[str, Timing]:
    """Best and median seconds per call of each callable.

    Each round runs every callable `warmup + block` times in a row (rotating who goes
    first) and keeps the last `block` timings: the first calls of a block only wake that
    side up (the other process's OpenMP threads spin for a while after its last call, and
    a process that sat idle pays for waking its threads and, on machines that page out
    cold memory, for faulting its code back in), so each side is timed warm.
    The best time is the one to compare on a shared machine (as `timeit` advises: slower
    runs are other processes' interference, not the code); the median is shown beside it.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(warmup):
                runs[name]()
            for _ in range(block):
                start = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - start)
            if os.environ.get("BENCH_VERBOSE"):
                print(name, [round(t * 1000, 1) for t in times[name][-block:]], flush=True)
    return {name: Timing(min(values), statistics.median(values)) for name, values in times.items()}


def verdict(ratio: float, goal: float | None) -> str:
    if goal is None:
        return ""
    return f"(goal <= {goal:.2f}: {'met' if ratio <= goal else 'NOT met'})"
