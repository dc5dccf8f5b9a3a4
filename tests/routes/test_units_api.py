"""Dataset exemplars over HTTP: the job's JSON and PNG answers, and the bad inputs."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.engine.exemplars.montage import montage_size
from service.settings import Settings
from tests.dataset_support import write_models
from tests.helpers import error_body

URL = "/v1/models/digits/datasets/digits/units"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = write_models(tmp_path_factory.mktemp("units"))
    with TestClient(create_app(Settings(models=config, device="cpu", torch_threads=2))) as client:
        yield client


def run_job(api: TestClient, url: str):
    accepted = api.post(url)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    end = time.monotonic() + 120  # a bound against hangs, not a timing assertion
    while (body := api.get(location).json())["status"] in ("queued", "running"):
        assert time.monotonic() < end, body
        time.sleep(0.05)
    assert body["status"] == "succeeded", body
    assert body["progress"]["step"] == body["progress"]["total"]
    return api.get(f"{location}/result")


def test_json_lists_each_channel_top_k(api: TestClient) -> None:
    answer = run_job(api, f"{URL}?layer=relu3&channels=7,2&k=4&score=mean&limit=150")
    result = answer.json()
    assert set(result) == {"layer", "score", "images", "units"}
    assert (result["layer"], result["score"], result["images"]) == ("relu3", "mean", 150)
    assert [u["channel"] for u in result["units"]] == [7, 2]
    for unit in result["units"]:
        values = [t["value"] for t in unit["top"]]
        assert len(values) == 4 and values == sorted(values, reverse=True)
        for top in unit["top"]:
            assert set(top) == {"index", "label", "value", "position", "box"}
            y, x = top["position"]
            assert 0 <= y < 8 and 0 <= x < 8  # relu3 is 8 x 8
            assert top["box"] == [
                max(0, 4 * x - 7),
                max(0, 4 * y - 7),
                min(32, 4 * x + 11),
                min(32, 4 * y + 11),
            ]  # conv/pool/conv/pool/conv: span 18, jump 4, start -7
            assert top["label"] in [str(d) for d in range(10)]


def test_png_is_one_unit_montage(api: TestClient) -> None:
    answer = run_job(api, f"{URL}?layer=relu2&channels=3&k=5&limit=60&format=png")
    assert answer.headers["content-type"] == "image/png"
    height, width = montage_size(api.app.state.registry.get("digits").spec, 5)
    assert Image.open(io.BytesIO(answer.content)).size == (width, height)


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("layer=relu3&k=0", 422, "k"),
        ("layer=relu3&k=65", 422, "k"),
        ("layer=relu3&channels=3,128", 422, "channels"),
        ("layer=relu3&channels=top:3", 422, "channels"),
        ("layer=relu3&channels=0-1&format=png", 422, "channels"),
        ("layer=relu3&score=median", 422, "score"),
        ("layer=nope", 404, "layer"),
    ],
)
def test_bad_input(api: TestClient, query: str, status: int, field: str) -> None:
    body = error_body(api.post(f"{URL}?{query}"), status, field)
    if "128" in query:
        assert body.get("valid_range") == [0, 127], body


def test_unknown_dataset_is_404(api: TestClient) -> None:
    error_body(api.post("/v1/models/digits/datasets/nope/units?layer=relu3"), 404, "dataset")
