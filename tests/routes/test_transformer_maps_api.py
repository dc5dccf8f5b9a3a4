"""`rollout` and `legrad` at /cam over HTTP: a timm ViT answers, a CNN answers 422."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.helpers import error_body, files, load_npy


@pytest.fixture(scope="module")
def api(source_models_file: Path) -> Iterator[TestClient]:
    settings = Settings(models=source_models_file, device="cpu", worker_threads=2)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("method", ["rollout", "legrad"])
def test_transformer_maps_answer_on_a_timm_vit(
    method: str, api: TestClient, china_png: bytes, flower_png: bytes
) -> None:
    params = {"method": method, "format": "npy", "target": "1,3"}
    answer = api.post("/v1/models/tvit/cam", params=params, files=files(china_png, flower_png))
    assert answer.status_code == 200, answer.text
    maps = load_npy(answer.content)
    assert maps.shape[:2] == (2, 2) and np.isfinite(maps).all() and maps.min() >= 0
    assert maps.max() > 0
    if method == "rollout":  # the class does not enter rollout
        np.testing.assert_array_equal(maps[:, 0], maps[:, 1])
    else:
        assert not np.allclose(maps[:, 0], maps[:, 1])


@pytest.mark.parametrize("method", ["rollout", "legrad"])
def test_transformer_maps_on_a_cnn_answer_422(
    method: str, api: TestClient, china_png: bytes
) -> None:
    answer = api.post("/v1/models/tcnn/cam", params={"method": method}, files=files(china_png))
    body = error_body(answer, 422, "method")
    assert "vision transformer" in body["detail"]
