"""Operations: start-up failures, API key, CORS, request ids, metrics, body limits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.helpers import files

ROOT = Path(__file__).resolve().parents[1]


def test_bad_config_stops_start_up_naming_entry_and_field(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        '[[models]]\nname = "broken"\narchitecture = "torchvision:resnet18"\n'
        'weights = "missing.safetensors"\n'
        "input_size = [64, 64]\nmean = [0.5, 0.5, 0.5]\nstd = [0.2, 0.2, 0.2]\nnum_classes = 10\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "1"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LAYERSCOPE_MODELS": str(config)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "'broken'" in result.stderr and "field 'weights'" in result.stderr


def test_api_key_guards_everything_but_health(tiny_config: Path, tiny_inputs: list[bytes]) -> None:
    with TestClient(
        create_app(Settings(models=tiny_config, device="cpu", api_key="s3cret"))
    ) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        denied = client.get("/v1/models")
        assert denied.status_code == 401 and denied.json()["field"] == "authorization"
        assert denied.headers["www-authenticate"] == "Bearer"
        assert (
            client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        assert client.get("/metrics").status_code == 401
        ok = client.post(
            "/v1/models/tiny-resnet/predict",
            files=files(tiny_inputs[0]),
            headers={"Authorization": "Bearer s3cret"},
        )
        assert ok.status_code == 200


def test_cors_is_off_unless_configured(tiny_config: Path) -> None:
    with TestClient(create_app(Settings(models=tiny_config, device="cpu"))) as client:
        answer = client.get("/v1/models", headers={"Origin": "https://portal.example"})
        assert "access-control-allow-origin" not in answer.headers
    settings = Settings(models=tiny_config, device="cpu", cors_origins=["https://portal.example"])
    with TestClient(create_app(settings)) as client:
        answer = client.get("/v1/models", headers={"Origin": "https://portal.example"})
        assert answer.headers["access-control-allow-origin"] == "https://portal.example"
        other = client.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_request_id_is_echoed_or_generated(default_client: TestClient) -> None:
    assert (
        default_client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    generated = default_client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert (
        default_client.get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"]
        != "bad id\n"
    )


def test_metrics_report_requests_stages_batches_and_rejections(
    tiny_client: TestClient, tiny_inputs: list[bytes]
) -> None:
    tiny_client.post(
        "/v1/models/tiny-resnet/feature-maps?layers=layer1&format=npy", files=files(tiny_inputs[0])
    )
    tiny_client.post("/v1/models/tiny-resnet/feature-maps?layers=nope", files=files(tiny_inputs[0]))
    text = tiny_client.get("/metrics").text
    assert (
        'layerscope_request_duration_seconds_count{method="POST",route="/v1/models/{model}/feature-maps",status="200"}'
        in text
    )
    assert 'route="/v1/models/{model}/feature-maps",status="404"' in text
    assert 'layerscope_stage_seconds_count{stage="forward"}' in text
    assert 'layerscope_stage_seconds_count{stage="decode_batch"}' in text
    assert 'layerscope_batch_size_count{model="tiny-resnet"}' in text
    assert 'layerscope_queue_wait_seconds_count{model="tiny-resnet"}' in text
    assert "layerscope_queue_depth" in text


def test_body_limit_with_and_without_content_length(tiny_config: Path) -> None:
    with TestClient(
        create_app(Settings(models=tiny_config, device="cpu", max_body_bytes=64 * 1024))
    ) as client:
        url = "/v1/models/tiny-resnet/predict"
        big = client.post(url, files=files(b"\x89PNG" + b"x" * 100_000))
        assert (
            big.status_code == 413
            and big.json()["max_bytes"] == 65536
            and big.headers["x-request-id"]
        )

        def chunks():
            for _ in range(200):
                yield b"y" * 1024

        chunked = client.post(
            url, content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"}
        )
        assert chunked.status_code == 413 and chunked.json()["field"] == "body"
        assert client.get("/readyz").status_code == 200
