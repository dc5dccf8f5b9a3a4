"""Two models compared over HTTP: the dataset job against the engine and each model's own
/predict answers, unmatched labels, cancel, and the errors."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from model_registry.builtin import digits
from service.app import create_app
from service.engine.compare.plan import MEMORY_CAP_BYTES, plan_compare
from service.engine.compare.run import compare
from service.settings import Settings
from tests.helpers import (
    digits_entry,
    error_body,
    files,
    load_npy,
    resnet18_entry,
    run_job,
    toml_table,
)
from tests.numerics import assert_float32_close

URL = "/v1/compare/datasets/digits"
LAYERS = "relu1,relu2,relu3"


def write_second_digits(folder: Path) -> Path:
    """A second digits checkpoint: the shipped weights with seeded noise."""
    from safetensors.torch import load_file

    state = load_file(str(digits.WEIGHTS_PATH))
    generator = torch.Generator().manual_seed(11)
    for name, value in state.items():
        if value.is_floating_point() and "running" not in name:
            state[name] = value + 0.3 * value.std() * torch.randn(value.shape, generator=generator)
    path = folder / "digits-b.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("compare")
    second = write_second_digits(folder)
    config = folder / "models.toml"
    config.write_text(
        digits_entry()
        + toml_table(
            "models",
            name="digits-b",
            architecture="builtin:digits",
            weights=second,
            input_size=[32, 32],
            mean=[0.5],
            std=[0.5],
            num_classes=10,
        )
        + resnet18_entry("petres", 3, size=48, labels=["cat", "dog", "fish"])
    )
    settings = Settings(models=config, device="cpu", torch_threads=2)
    with TestClient(create_app(settings)) as client:
        yield client


def test_two_digits_checkpoints_equal_the_engine_and_their_own_predictions(
    api: TestClient,
) -> None:
    query = f"models=digits,digits-b&layers_a={LAYERS}&layers_b={LAYERS}&limit=30&seed=4"
    job, result = run_job(api, f"{URL}?{query}")
    assert job["kind"] == "compare_datasets"
    assert job["progress"]["step"] == job["progress"]["total"] == 30
    registry, dataset = api.app.state.registry, api.app.state.datasets.get("digits")
    first, second = registry.get("digits"), registry.get("digits-b")
    layers = LAYERS.split(",")
    plan = plan_compare(
        first,
        second,
        dataset,
        layers_a=layers,
        layers_b=layers,
        pool="mean",
        debiased=False,
        limit=30,
        seed=4,
    )
    expected = compare(first, second, dataset, plan, max_pixels=1 << 24)
    assert result["indices"] == expected.indices.tolist() == list(plan.indices)
    assert result["cka"]["layers_a"] == layers == result["cka"]["layers_b"]
    np.testing.assert_allclose(result["cka"]["matrix"], expected.cka, atol=1e-9)
    assert [d["layer"] for d in result["drift"]] == layers
    assert all(d["drift"] > 0 for d in result["drift"])
    # Each model's own answer for each picture, through /predict.
    references = ",".join(f"dataset:digits/{i}" for i in result["indices"])
    own = {}
    for name in ("digits", "digits-b"):
        answer = api.post(f"/v1/models/{name}/predict?image={references}&top_k=1")
        assert answer.status_code == 200, answer.text
        own[name] = [row[0] for row in answer.json()["predictions"]]
    labels = [dataset.label(i) for i in result["indices"]]
    guess = {name: [int(p["label"]) for p in rows] for name, rows in own.items()}
    accuracy = {a["model"]: a["accuracy"] for a in result["accuracy"]}
    for name in own:
        assert accuracy[name] == pytest.approx(np.mean(np.equal(guess[name], labels)))
    same = np.equal(guess["digits"], guess["digits-b"])
    assert result["agreement"] == pytest.approx(same.mean())
    flipped = {i for i, s in zip(result["indices"], same, strict=True) if not s}
    assert {f["index"] for f in result["flips"]} == flipped and flipped
    for flip in result["flips"]:
        row = result["indices"].index(flip["index"])
        assert flip["predicted_a"] == own["digits"][row]["label"]
        assert flip["probability_a"] == pytest.approx(own["digits"][row]["probability"], abs=1e-5)
        assert flip["predicted_b"] == own["digits-b"][row]["label"]
    assert sum(row["n"] for row in result["per_class"]) == 30
    for row in result["per_class"]:
        mine = [
            g
            for g, label in zip(guess["digits"], labels, strict=True)
            if str(label) == row["class"]
        ]
        assert row["accuracy_a"] == pytest.approx(np.mean(np.equal(mine, int(row["class"]))))


def test_unmatched_labels_give_null_accuracy_and_default_layers(api: TestClient) -> None:
    _, result = run_job(api, f"{URL}?models=digits,petres&limit=8&debiased=true")
    assert result["cka"]["layers_b"] == ["layer1", "layer2", "layer3", "layer4"]
    assert "relu3" in result["cka"]["layers_a"]
    matrix = np.array(result["cka"]["matrix"], dtype=float)
    assert matrix.shape == (len(result["cka"]["layers_a"]), 4) and np.isfinite(matrix).all()
    accuracy = {a["model"]: a["accuracy"] for a in result["accuracy"]}
    assert accuracy["petres"] is None and accuracy["digits"] is not None
    assert 0 <= result["agreement"] <= 1  # digits names digits, petres names pets: no match
    assert all(row["accuracy_b"] is None for row in result["per_class"])
    assert result["drift"] == []


def test_a_comparison_job_can_be_cancelled(api: TestClient) -> None:
    accepted = api.post(f"{URL}?models=digits,digits-b&pool=flatten&layers_a=relu1&layers_b=relu1")
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    assert api.delete(location).status_code == 200
    end = time.monotonic() + 300  # a bound against hangs, not a timing assertion
    while (body := api.get(location).json())["status"] in ("queued", "running"):
        assert time.monotonic() < end, body
        time.sleep(0.05)
    assert body["status"] == "cancelled", body
    for model in api.app.state.registry:
        hooks = [m for m in model.module.modules() if m._forward_hooks]
        assert hooks == []


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("models=digits,nope", 404, "models"),
        ("models=digits", 422, "models"),
        ("models=digits,digits-b,petres", 422, "models"),
        ("models=digits,digits-b&layers_a=relu9", 404, "layers_a"),
        ("models=digits,digits-b&layers_b=", 422, "layers_b"),
        ("models=digits,digits-b&layers_a=,", 422, "layers_a"),
        ("models=digits,digits-b&pool=median", 422, None),
        ("models=digits,digits-b&pool=flatten&debiased=true", 422, "pool"),
    ],
)
def test_bad_input_names_the_field(api: TestClient, query: str, status: int, field: str) -> None:
    body = error_body(api.post(f"{URL}?{query}"), status, field)
    if field == "pool":
        assert body["cap_bytes"] == MEMORY_CAP_BYTES and body["requested_bytes"] > body["cap_bytes"]
    if field == "models" and status == 404:
        assert "nope" in body["detail"]


def test_an_unknown_dataset_is_404(api: TestClient) -> None:
    error_body(api.post("/v1/compare/datasets/nope?models=digits,digits-b"), 404, "dataset")


PICTURE = "/v1/compare?models=digits,digits-b&layer_a=relu3&layer_b=relu2&method=gradcam++"


def own_cam(api: TestClient, model: str, layer: str, fmt: str, image: str) -> bytes:
    answer = api.post(
        f"/v1/models/{model}/cam?layer={layer}&method=gradcam%2B%2B&format={fmt}&image={image}"
    )
    assert answer.status_code == 200, answer.text
    return answer.content


def test_a_picture_compared_equals_each_models_own_cam(api: TestClient) -> None:
    image = "dataset:digits/5"
    stacked = api.post(f"{PICTURE}&format=npy&image={image}")
    assert stacked.status_code == 200, stacked.text
    maps = load_npy(stacked.content)
    assert maps.shape == (2, 1, 32, 32)
    assert_float32_close(maps[0], load_npy(own_cam(api, "digits", "relu3", "npy", image)))
    assert_float32_close(maps[1], load_npy(own_cam(api, "digits-b", "relu2", "npy", image)))
    picture = api.post(f"{PICTURE}&image_id={image}")
    assert picture.headers["content-type"] == "image/png"
    joined = np.asarray(Image.open(io.BytesIO(picture.content)).convert("RGB"))
    left, right = (
        np.asarray(Image.open(io.BytesIO(own_cam(api, m, lay, "png", image))).convert("RGB"))
        for m, lay in (("digits", "relu3"), ("digits-b", "relu2"))
    )
    np.testing.assert_array_equal(joined[: left.shape[0], : left.shape[1]], left)
    np.testing.assert_array_equal(joined[: right.shape[0], -right.shape[1] :], right)
    assert joined.shape[1] == left.shape[1] + right.shape[1] + 8


def test_an_upload_compared_gives_both_predictions(api: TestClient) -> None:
    data = api.get("/v1/datasets/digits/images/7").content
    answer = api.post(f"{PICTURE}&format=json", files=files(data))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["models"] == ["digits", "digits-b"] and body["layers"] == ["relu3", "relu2"]
    for name, rows in zip(body["models"], body["predictions"], strict=True):
        own = api.post(f"/v1/models/{name}/predict", files=files(data)).json()["predictions"]
        assert [p["label"] for p in rows[0]] == [p["label"] for p in own[0]][: len(rows[0])]
        assert rows[0][0]["probability"] == pytest.approx(own[0][0]["probability"], abs=1e-5)
    assert base64.b64decode(body["png_base64"]).startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("models=digits,petres&format=npy", 422, "format"),
        ("models=digits,digits-b&layer_a=relu9", 404, "layer_a"),
        ("models=digits,digits-b&layer_b=relu1,relu2", 422, "layer_b"),
        ("models=nope,digits", 404, "models"),
        ("models=digits&method=gradcam", 422, "models"),
    ],
)
def test_bad_picture_comparisons_name_the_field(
    api: TestClient, query: str, status: int, field: str
) -> None:
    error_body(api.post(f"/v1/compare?{query}&image=dataset:digits/1"), status, field)
