"""Overload, deadlines, failing models and SIGTERM: the service answers and stays up."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from model_registry.catalog import build_catalog
from model_registry.registry import LoadedModel, ModelRegistry
from model_registry.spec import ModelSpec
from service.app import create_app
from service.settings import Settings
from tests.helpers import LiveServer, files, png, serving


class Gated(nn.Module):
    """A tiny conv net whose forward waits for a gate (to hold the device thread) or raises."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("/secret/path.py: model exploded")
        return self.fc(self.pool(self.conv(x)).flatten(1))


@pytest.fixture
def gated() -> Gated:
    return Gated().eval()


def _registry(model: Gated) -> ModelRegistry:
    spec = ModelSpec("gated", "builtin:test", None, (16, 16), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 2)
    device = torch.device("cpu")
    return ModelRegistry(
        [
            LoadedModel(
                spec, model, device, build_catalog("gated", model, (3, 16, 16), device), False, None
            )
        ]
    )


@pytest.fixture
def picture() -> bytes:
    return png(torch.randint(0, 255, (16, 16, 3), dtype=torch.uint8).numpy())


def _client(model: Gated, **settings) -> TestClient:
    app = create_app(
        Settings(device="cpu", **settings), registry_loader=lambda _s: _registry(model)
    )
    return TestClient(app, raise_server_exceptions=False)


def _in_thread(fn) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


def test_full_queue_is_a_fast_503_with_retry_after(gated: Gated, picture: bytes) -> None:
    with _client(gated, max_queue=2) as client:
        gated.gate.clear()
        running = [
            _in_thread(
                lambda: client.post("/v1/models/gated/predict?top_k=1", files=files(picture))
            )
            for _ in range(2)
        ]
        time.sleep(0.3)
        started = time.monotonic()
        refused = client.post("/v1/models/gated/predict?top_k=1", files=files(picture))
        assert time.monotonic() - started < 1.0
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["model"] == "gated"
        assert (
            client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
        )
        assert "layerscope_queue_depth" in client.get("/metrics").text  # never queued
        gated.gate.set()
        for thread, out in running:
            thread.join(10)
            assert out[0].status_code == 200
        assert 'layerscope_rejections_total{reason="queue_full"} 1.0' in client.get("/metrics").text


def test_request_still_queued_at_its_deadline_is_504_without_running(
    gated: Gated, picture: bytes
) -> None:
    with _client(gated, request_timeout_s=0.3) as client:
        gated.gate.clear()
        first, _ = _in_thread(
            lambda: client.post("/v1/models/gated/predict?top_k=1", files=files(picture))
        )
        time.sleep(0.1)
        late = _in_thread(
            lambda: client.post(
                "/v1/models/gated/feature-maps?layers=conv&format=npy", files=files(picture)
            )
        )
        time.sleep(0.6)
        gated.gate.set()
        first.join(10)
        late[0].join(10)
        assert late[1][0].status_code == 504
        assert "deadline" in late[1][0].json()["detail"]


def test_a_failing_model_is_a_bare_500_and_the_next_request_works(
    gated: Gated, picture: bytes
) -> None:
    with _client(gated) as client:
        gated.fail = True
        answer = client.post(
            "/v1/models/gated/predict?top_k=1",
            files=files(picture),
            headers={"X-Request-ID": "fault-1"},
        )
        assert answer.status_code == 500
        assert answer.json() == {"detail": "Internal server error", "request_id": "fault-1"}
        assert "secret" not in answer.text
        gated.fail = False
        assert (
            client.post("/v1/models/gated/predict?top_k=1", files=files(picture)).status_code == 200
        )
        assert all(not m._forward_hooks for m in gated.modules())


@pytest.fixture
def live() -> Iterator[LiveServer]:
    with serving({"LAYERSCOPE_LOG_LEVEL": "info"}) as server:
        yield server


def test_sigterm_drains_in_flight_requests(live: LiveServer, photo_images) -> None:
    photos = [
        png(img.resize((224 + i, 224))) for i, img in enumerate(list(photo_images.values()) * 16)
    ]
    url = f"{live.url}/v1/models/resnet18/feature-maps"
    thread, out = _in_thread(
        lambda: httpx.post(
            url, params={"layers": "layer4", "format": "npy"}, files=files(*photos), timeout=120
        )
    )
    time.sleep(0.4)  # the 32-image request is in flight
    live.process.send_signal(signal.SIGTERM)
    thread.join(120)
    assert out and out[0].status_code == 200, live.output()[-2000:]
    assert out[0].headers["content-type"] == "application/x-npy"
    # uvicorn drains, shuts the lifespan down, then re-raises SIGTERM to exit with it
    assert live.process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in live.output()
