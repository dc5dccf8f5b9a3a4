"""Concurrent requests on a real server never see each other's activations or answers."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import LiveServer, digits_entry, serving


@pytest.fixture(scope="module")
def server(tiny_config: Path) -> Iterator[LiveServer]:
    config = tiny_config.parent / "isolation.toml"
    config.write_text(
        tiny_config.read_text().replace('weights = "', f'weights = "{tiny_config.parent}/')
        + digits_entry()
    )
    with serving({"LAYERSCOPE_MODELS": str(config), "LAYERSCOPE_LOG_LEVEL": "warning"}) as live:
        yield live


def _requests(
    tiny_inputs: list[bytes], digit_pngs: list[bytes]
) -> list[tuple[str, dict, list[bytes]]]:
    fm = "/v1/models/tiny-resnet/feature-maps"
    jobs = []
    for i in range(32):
        photo = tiny_inputs[i % 2]
        digit = digit_pngs[i % 10]
        kind = i % 8
        if kind == 0:
            jobs.append((fm, {"layers": "layer1", "channels": "all", "format": "npy"}, [photo]))
        elif kind == 1:
            jobs.append(
                (
                    fm,
                    {"layers": "layer3", "channels": "top:5", "format": "npy"},
                    [photo, tiny_inputs[(i + 1) % 2]],
                )
            )
        elif kind == 2:
            jobs.append(
                (
                    fm,
                    {"layers": "conv1,layer2", "channels": f"{i}-{i + 3}", "format": "npy"},
                    [photo],
                )
            )
        elif kind == 3:
            jobs.append(("/v1/models/tiny-resnet/predict", {"top_k": 3}, [photo]))
        elif kind == 6:
            method = ("gradcam", "layercam", "gradcam++")[i % 3]
            cam = {"method": method, "layer": "layer2,layer3", "target": f"{i % 4},1"}
            jobs.append(("/v1/models/tiny-resnet/cam", {**cam, "format": "npy"}, [photo]))
        elif kind == 7:
            method = ("guided-backprop", "vanilla", "integrated-gradients")[i % 3]
            jobs.append(
                (
                    "/v1/models/digits/gradients",
                    {"method": method, "steps": 8, "format": "npy"},
                    [digit],
                )
            )
        elif kind == 4:
            jobs.append(
                (
                    "/v1/models/digits/feature-maps",
                    {"layers": "conv2", "channels": "all", "format": "npy"},
                    [digit],
                )
            )
        else:
            jobs.append(("/v1/models/digits/predict", {"top_k": 2}, [digit]))
    return jobs


def _send(client: httpx.Client, url: str, params: dict, images: list[bytes]) -> object:
    answer = client.post(
        url,
        params=params,
        files=[("image", (f"{i}.png", d, "image/png")) for i, d in enumerate(images)],
    )
    answer.raise_for_status()
    if answer.headers["content-type"] == "application/json":
        return answer.json()
    if answer.headers["content-type"] == "application/zip":
        archive = np.load(io.BytesIO(answer.content))
        return {name: archive[name] for name in archive.files}
    return np.load(io.BytesIO(answer.content))


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.shape == b.shape
            and np.allclose(a, b, rtol=1e-4, atol=1e-5)
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float):
        return abs(a - b) < 1e-5
    return a == b


def test_barrier_synchronised_mixed_requests_equal_the_same_requests_alone(
    server: LiveServer, tiny_inputs: list[bytes], digit_pngs: list[bytes]
) -> None:
    jobs = _requests(tiny_inputs, digit_pngs)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        alone = [_send(client, *job) for job in jobs]
    barrier = threading.Barrier(len(jobs))
    together: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def fire(i: int) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                barrier.wait()
                for _ in range(2):
                    together[i] = _send(client, *jobs[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        assert _same(a, b), f"request {i} {jobs[i][:2]} differs when run concurrently"
    metrics = dict(
        line.rsplit(" ", 1)
        for line in httpx.get(f"{server.url}/metrics").text.splitlines()
        if line and not line.startswith("#")
    )
    images = float(metrics['layerscope_batch_size_sum{model="tiny-resnet"}'])
    passes = float(metrics['layerscope_batch_size_count{model="tiny-resnet"}'])
    assert (
        images / passes > 1.0
    )  # concurrent compatible requests were batched, and still came back right
