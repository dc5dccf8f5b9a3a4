"""POST /v1/models/{model}/concepts over HTTP: png, npy and json answers, the classifier's
classes (or the reason there are none), and bad input answered 422 naming the field."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from model_registry.datasets import DigitsDataset
from service.engine.concepts.factorize import compute_concepts, plan_concepts
from tests.helpers import error_body, files, load_npy
from tests.tiny_models import model_batch

URL = "/v1/models/{}/concepts"


@pytest.fixture(scope="module")
def digit_files() -> list[tuple[str, tuple[str, bytes, str]]]:
    dataset = DigitsDataset()
    return files(*(dataset.read(i) for i in (0, 1, 2)))


def test_npy_equals_the_engine(api, digit_files, digits) -> None:
    answer = api.post(URL.format("digits"), params={"k": 3, "format": "npy"}, files=digit_files)
    assert answer.status_code == 200, answer.text
    values = load_npy(answer.content)
    assert values.shape == (3, 3, 32, 32)
    pictures = [Image.open(io.BytesIO(f[1][1])) for f in digit_files]
    plan = plan_concepts(digits, layer=None, k=3, top=3)
    expected = compute_concepts(digits, model_batch(digits, pictures), plan).heatmaps
    np.testing.assert_allclose(values, expected, atol=1e-4)


def test_json_lists_each_concepts_classes(api, digit_files) -> None:
    params = {"k": 4, "top": 2, "format": "json", "layer": "relu3"}
    body = api.post(URL.format("digits"), params=params, files=digit_files).json()
    assert body["classifier"] == "fc" and body["classes_note"] is None
    assert body["shape"] == [3, 4, 32, 32] and len(body["concepts"]) == 4
    for concept in body["concepts"]:
        scores = [c["score"] for c in concept["classes"]]
        assert len(scores) == 2 and scores == sorted(scores, reverse=True)
        assert len(concept["strength"]) == 3 and min(concept["strength"]) >= 0
    picture = Image.open(io.BytesIO(base64.b64decode(body["png_base64"])))
    assert picture.width > 3 * picture.height  # three pictures and the legend side by side


def test_an_inner_layer_answers_without_classes(api, digit_files) -> None:
    params = {"k": 2, "format": "json", "layer": "relu2"}
    body = api.post(URL.format("digits"), params=params, files=digit_files[:1]).json()
    assert body["classifier"] is None and "64 channels" in body["classes_note"]
    assert all(concept["classes"] is None for concept in body["concepts"])


def test_png_draws_one_colour_per_concept(api, digit_files) -> None:
    answer = api.post(URL.format("tinyres"), params={"k": 3}, files=digit_files[:1])
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"layer": "fc"}, "layer"),
        ({"layer": "conv1", "k": 32, "model": "digits"}, None),
        ({"layer": "nope"}, "layer"),
        ({"k": 0}, "k"),
        ({"top": 21}, "top"),
    ],
)
def test_bad_input_is_422_naming_the_field(api, digit_files, params, field) -> None:
    params = dict(params)
    model = params.pop("model", "digits")
    answer = api.post(URL.format(model), params=params, files=digit_files[:1])
    if field is None:  # conv1 has 32 channels: k=32 is the largest valid value
        assert answer.status_code == 200
        return
    status = 404 if params.get("layer") == "nope" else 422
    error_body(answer, status, field)


def test_k_above_the_bound_is_422(api, digit_files) -> None:
    answer = api.post(URL.format("digits"), params={"k": 33}, files=digit_files[:1])
    error_body(answer, 422, "k")
