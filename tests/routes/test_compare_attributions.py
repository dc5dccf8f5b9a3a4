"""The picture comparison with /attributions methods: each side equals that model's own
/attributions answer (png side by side; npy with the channels reduced as the view draws
them), the method's parameters pass through, and parameters of another method are 422."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.settings import Settings
from service.workers.compare_tasks import one_map
from tests.helpers import digits_entry, error_body, load_npy, toml_table
from tests.numerics import assert_float32_close
from tests.routes.test_compare_api import write_second_digits

IMAGE = "dataset:digits/5"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("compare-attributions")
    config = folder / "models.toml"
    config.write_text(
        digits_entry()
        + toml_table(
            "models",
            name="digits-b",
            architecture="builtin:digits",
            weights=write_second_digits(folder),
            input_size=[32, 32],
            mean=[0.5],
            std=[0.5],
            num_classes=10,
        )
    )
    settings = Settings(models=config, device="cpu", torch_threads=2)
    with TestClient(create_app(settings)) as client:
        yield client


class Case(NamedTuple):
    method: str
    own: str  # the method's parameters, as /attributions takes them
    layers: tuple[str, str] | None = None  # guided-gradcam's Grad-CAM layers
    view: str = "heatmap"


CASES = [
    Case("occlusion", "window=8&stride=4&baseline=mean"),
    Case("lrp", "rule=epsilon-plus"),
    Case("deeplift", "baseline=blur", view="positive"),
    Case("integrated-gradients", "steps=4", view="negative"),
    Case("guided-gradcam", "", layers=("relu3", "relu2")),
]


def own(api: TestClient, model: str, case: Case, layer: str | None, fmt: str) -> bytes:
    query = f"method={case.method}&{case.own}&view={case.view}&format={fmt}&image={IMAGE}"
    answer = api.post(
        f"/v1/models/{model}/attributions?{query}" + (f"&layer={layer}" * bool(layer))
    )
    assert answer.status_code == 200, answer.text
    return answer.content


def rgb(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.method)
def test_each_side_equals_the_models_own_attributions(api: TestClient, case: Case) -> None:
    layer_a, layer_b = case.layers or (None, None)
    query = f"models=digits,digits-b&method={case.method}&{case.own}&view={case.view}"
    if case.layers:
        query += f"&layer_a={layer_a}&layer_b={layer_b}"
    stacked = api.post(f"/v1/compare?{query}&format=npy&image={IMAGE}")
    assert stacked.status_code == 200, stacked.text
    maps = load_npy(stacked.content)
    assert maps.shape == (2, 1, 32, 32)
    for side, (model, layer) in enumerate((("digits", layer_a), ("digits-b", layer_b))):
        values = load_npy(own(api, model, case, layer, "npy"))
        assert values.shape == (1, 1, 32, 32)
        assert_float32_close(maps[side], one_map(values, case.view))
    assert not np.allclose(maps[0], maps[1])  # other weights, other maps
    joined = rgb(api.post(f"/v1/compare?{query}&image={IMAGE}").content)
    left, right = (
        rgb(own(api, m, case, lay, "png"))
        for m, lay in (("digits", layer_a), ("digits-b", layer_b))
    )
    np.testing.assert_array_equal(joined[: left.shape[0], : left.shape[1]], left)
    np.testing.assert_array_equal(joined[: right.shape[0], -right.shape[1] :], right)


def test_json_names_no_layer_for_input_attributions(api: TestClient) -> None:
    answer = api.post(
        f"/v1/compare?models=digits,digits-b&method=vanilla&format=json&image={IMAGE}"
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["method"] == "vanilla" and body["layers"] == [None, None]
    assert len(body["predictions"]) == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("method=gradcam&steps=4", "steps"),
        ("method=vanilla&layer_a=relu3", "layer_a"),
        ("method=occlusion&steps=4", "steps"),
        ("method=occlusion&window=0", "window"),
        ("method=guided-gradcam&layer_b=relu9", "layer_b"),
        ("method=lrp&rule=nope", "rule"),
        ("method=vanilla&alpha=2", "alpha"),
        ("method=nope", "method"),
    ],
)
def test_bad_parameters_name_the_field(api: TestClient, query: str, field: str) -> None:
    answer = api.post(f"/v1/compare?models=digits,digits-b&{query}&image={IMAGE}")
    assert answer.status_code in (404, 422), answer.text
    error_body(answer, answer.status_code, field)
