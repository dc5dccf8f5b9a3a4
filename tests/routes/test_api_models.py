"""Model list, catalog and predictions through the real app."""

from __future__ import annotations

import torch
from fastapi.testclient import TestClient

from model_registry.builtin import digits
from tests.helpers import files, png, seeded_resnet


def test_health_and_readiness(default_client: TestClient) -> None:
    assert default_client.get("/healthz").json() == {"status": "ok"}
    ready = default_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == ["digits", "resnet18"]


def test_readiness_is_503_before_models_load() -> None:
    from service.app import create_app
    from service.settings import Settings

    client = TestClient(create_app(Settings(device="cpu")))  # lifespan not run: nothing loaded
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert client.get("/v1/models").status_code == 503


def test_default_models(default_client: TestClient) -> None:
    body = default_client.get("/v1/models").json()
    assert body["count"] == 2
    by_name = {m["name"]: m for m in body["data"]}
    assert by_name["digits"] | {"layers": 0} == {
        "name": "digits",
        "architecture": "builtin:digits",
        "num_classes": 10,
        "input_size": [32, 32],
        "in_channels": 1,
        "mean": [0.5],
        "std": [0.5],
        "device": "cpu",
        "pretrained": True,
        "layers": 0,
        "preprocessing": {"resize": "squash", "crop_pct": 1.0, "interpolation": "bilinear"},
        "task": "classification",
    }
    assert by_name["resnet18"]["input_size"] == [224, 224]
    # torchvision's weights are evaluated after a resize to 256 and a 224 centre crop.
    assert by_name["resnet18"]["preprocessing"] == {
        "resize": "crop",
        "crop_pct": 0.875,
        "interpolation": "bilinear",
    }
    assert default_client.get("/v1/models/resnet18").json() == by_name["resnet18"]


def test_layer_catalog_endpoint(default_client: TestClient) -> None:
    body = default_client.get("/v1/models/resnet18/layers").json()
    layers = {layer["name"]: layer for layer in body["data"]}
    # 67 named modules, and each BasicBlock's twice-called relu also as relu#0 and relu#1.
    assert body["count"] == len(body["data"]) == 67 + 8 * 2
    bare = [layer["name"] for layer in body["data"] if layer["call"] is None]
    assert len(bare) == 67
    names = [layer["name"] for layer in body["data"]]
    at = names.index("layer1.0.relu")
    assert names[at : at + 3] == ["layer1.0.relu", "layer1.0.relu#0", "layer1.0.relu#1"]
    assert [layers[n]["call"] for n in names[at : at + 3]] == [None, 0, 1]
    assert layers["layer3"]["output_shape"] == [256, 14, 14]
    assert layers["conv1"] == {
        "name": "conv1",
        "type": "Conv2d",
        "output_shape": [64, 112, 112],
        "params": 9408,
        "spatial": True,
        "spatial_shape": [64, 112, 112],
        "call": None,
    }
    assert layers["fc"]["output_shape"] == [1000] and layers["fc"]["spatial"] is False


def test_digits_predictions_over_http_match_held_out_accuracy(default_client: TestClient) -> None:
    split = digits.load_split()
    pixels = (
        ((split.test_x[:120, 0] * digits.STD[0] + digits.MEAN[0]) * 255)
        .round()
        .to(torch.uint8)
        .numpy()
    )
    labels = split.test_y[:120].tolist()
    correct = 0
    for start in range(0, 120, 30):
        answer = default_client.post(
            "/v1/models/digits/predict?top_k=3",
            files=files(*(png(p) for p in pixels[start : start + 30])),
        )
        assert answer.status_code == 200
        rows = answer.json()["predictions"]
        assert len(rows) == 30 and all(len(row) == 3 for row in rows)
        for row, label in zip(rows, labels[start : start + 30], strict=True):
            probabilities = [item["probability"] for item in row]
            assert (
                probabilities == sorted(probabilities, reverse=True)
                and sum(probabilities) <= 1 + 1e-6
            )
            correct += row[0]["label"] == str(label)
    assert correct / 120 >= 0.95


def test_predictions_equal_the_model_in_process(
    tiny_client: TestClient, tiny_inputs: list[bytes]
) -> None:
    from tests.routes.test_api_feature_maps import reference_batch

    answer = tiny_client.post(
        "/v1/models/tiny-resnet/predict?top_k=10", files=files(*tiny_inputs)
    ).json()
    with torch.no_grad():
        probabilities = seeded_resnet(7)(reference_batch(tiny_inputs)).softmax(1)
    for row, expected in zip(answer["predictions"], probabilities, strict=True):
        for item in row:
            assert abs(item["probability"] - float(expected[item["class_index"]])) < 1e-5
        assert row[0]["class_index"] == int(expected.argmax())
        assert (
            row[0]["label"]
            == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"][
                row[0]["class_index"]
            ]
        )


def test_digits_spec_matches_its_training() -> None:
    assert digits.INPUT_SIZE == (32, 32) and digits.LABELS[7] == "7"
