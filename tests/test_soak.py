"""Soak: 2,000 mixed requests against a real server; memory, hooks and descriptors stay flat."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import LiveServer, files

pytestmark = pytest.mark.slow


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture(scope="module")
def server(tiny_config: Path) -> Iterator[LiveServer]:
    live = LiveServer(
        {"LAYERSCOPE_MODELS": str(tiny_config), "LAYERSCOPE_LOG_LEVEL": "warning"}
    ).wait_ready()
    yield live
    live.stop()


def _mixed(i: int, tiny_inputs: list[bytes]) -> tuple[str, dict, list]:
    fm = "/v1/models/tiny-resnet/feature-maps"
    picture = [tiny_inputs[i % 2]]
    return [
        (fm, {"layers": "layer2", "format": "npy"}, files(*picture)),
        (fm, {"layers": "conv1,layer1", "channels": "top:4"}, files(*picture)),
        (fm, {"layers": "layer3", "reduce": "pca", "format": "json"}, files(*picture)),
        ("/v1/models/tiny-resnet/predict", {"top_k": 3}, files(*picture)),
        (fm, {"layers": "nope"}, files(*picture)),  # a 404 now and then
        (fm, {"layers": "layer1"}, files(b"not an image")),  # and a 415
        ("/v1/models/tiny-resnet/cam", {"method": "gradcam++", "format": "npy"}, files(*picture)),
        ("/v1/models/tiny-resnet/gradients", {"method": "guided-backprop"}, files(*picture)),
    ][i % 8]


def test_two_thousand_mixed_requests_leave_no_trace(
    server: LiveServer, tiny_inputs: list[bytes]
) -> None:
    pid = server.process.pid

    def run(count: int, offset: int) -> list[int]:
        def one(i: int) -> int:
            url, params, upload = _mixed(i, tiny_inputs)
            with httpx.Client(base_url=server.url, timeout=60) as client:
                return client.post(url, params=params, files=upload).status_code

        with ThreadPoolExecutor(8) as threads:
            return list(threads.map(one, range(offset, offset + count)))

    run(300, 0)  # warm-up: allocator pools, caches, lazy imports
    rss_before, fds_before = _rss_bytes(pid), _open_fds(pid)
    statuses = run(2000, 300)
    rss_after, fds_after = _rss_bytes(pid), _open_fds(pid)
    assert set(statuses) <= {200, 404, 415}
    assert statuses.count(200) >= 2000 * 6 // 8 - 2
    assert rss_after - rss_before < 50 * 1024 * 1024, (
        f"RSS grew {(rss_after - rss_before) / 2**20:.1f} MiB"
    )
    assert fds_after - fds_before <= 4, f"fds {fds_before} -> {fds_after}"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'layerscope_queue_depth{model="tiny-resnet"} 0.0' in metrics
    assert 'layerscope_model_hooks{model="tiny-resnet"} 0.0' in metrics
    print(
        f"soak: RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB, fds {fds_before} -> "
        f"{fds_after}"
    )
