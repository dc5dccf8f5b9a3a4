"""Datasets over HTTP: the list, the analysis job on the whole digits set and on folders
written by the test, dataset pictures named in other endpoints, and the errors."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from service.app import create_app
from service.settings import Settings
from tests.dataset_support import DEAD_CHANNEL, PER_CLASS, PET_CLASSES, WIDTH, write_models
from tests.helpers import error_body, run_job

DIGITS = "/v1/models/digits/datasets/digits/analysis"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = write_models(tmp_path_factory.mktemp("datasets"))
    settings = Settings(models=config, device="cpu", torch_threads=2)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def digits_result(api: TestClient) -> tuple[dict, dict]:
    return run_job(api, f"{DIGITS}?layers=relu1,relu2,relu3&method=tsne&seed=0")


def check_arithmetic(result: dict) -> None:
    """Confusion adds up to images, accuracy is its trace, mistakes are its off-diagonal."""
    images, confusion = result["images"], np.array(result["confusion"])
    classes = len(result["classes"])
    assert confusion.shape == (classes, classes) and confusion.sum() == images
    assert result["accuracy"] == pytest.approx(np.trace(confusion) / images)
    labels, predicted = np.array(result["labels"]), np.array(result["predicted"])
    for true, guess in zip(labels, predicted, strict=True):
        confusion[true, guess] -= 1
    assert not confusion.any()  # each picture's (label, predicted) is counted once
    mistakes = result["misclassified"]
    off_diagonal = Counter((m["label"], m["predicted"]) for m in mistakes)
    again = np.array(result["confusion"])
    assert sum(off_diagonal.values()) == images - np.trace(again)
    for (true, guess), count in off_diagonal.items():
        assert true != guess and again[true, guess] == count
    chances = [m["probability"] for m in mistakes]
    assert chances == sorted(chances, reverse=True)
    where = dict(zip(result["indices"], zip(labels, predicted, strict=True), strict=True))
    assert all(where[m["index"]] == (m["label"], m["predicted"]) for m in mistakes)
    for layer in result["layers"]:
        per_image = int(np.prod(layer["shape"]))
        assert layer["values"] == per_image * images
        assert sum(layer["histogram"]["counts"]) == layer["values"]
        assert len(layer["histogram"]["edges"]) == len(layer["histogram"]["counts"]) + 1


def test_datasets_are_listed(api: TestClient) -> None:
    data = {d["name"]: d for d in api.get("/v1/datasets").json()["data"]}
    assert list(data) == ["digits", "pets", "shapes"]
    assert data["digits"] == {"name": "digits", "size": 1797, "classes": list("0123456789")}
    assert data["pets"]["size"] == len(PET_CLASSES) * PER_CLASS + 1
    assert data["pets"]["classes"] == list(PET_CLASSES)


def test_the_whole_digits_set_through_the_digits_model(digits_result: tuple[dict, dict]) -> None:
    job, result = digits_result
    assert job["kind"] == "dataset_analysis"
    assert job["progress"] == {"step": 1797, "total": 1797, "fraction": 1.0}
    assert result["images"] == 1797 and result["indices"] == list(range(1797))
    assert result["skipped"] == []
    assert Counter(result["labels"]) == Counter(
        {d: n for d, n in enumerate([178, 182, 177, 183, 181, 182, 181, 179, 174, 180])}
    )
    assert result["accuracy"] >= 0.98
    check_arithmetic(result)
    assert [layer["name"] for layer in result["layers"]] == ["relu1", "relu2", "relu3"]
    assert [layer["shape"] for layer in result["layers"]] == [
        [32, 32, 32],
        [64, 16, 16],
        [128, 8, 8],
    ]
    for layer in result["layers"]:
        assert 0 < layer["sparsity"] < 1 and layer["min"] == 0 and layer["dead_fraction"] < 0.5


def test_the_digits_embedding_separates_the_classes(digits_result: tuple[dict, dict]) -> None:
    _, result = digits_result
    embedding = result["embedding"]
    assert (embedding["layer"], embedding["method"], embedding["feature_dim"]) == (
        "relu3",
        "tsne",
        128,
    )
    points, labels = np.array(embedding["points"]), np.array(embedding["labels"])
    assert points.shape == (1797, 2) and embedding["predicted"] == result["predicted"]
    knn = cross_val_score(KNeighborsClassifier(n_neighbors=5), points, labels, cv=5)
    assert knn.mean() >= 0.9


def test_a_mistake_opens_as_image_dataset_everywhere(
    api: TestClient, digits_result: tuple[dict, dict]
) -> None:
    _, result = digits_result
    mistake = result["misclassified"][0]
    reference = f"dataset:digits/{mistake['index']}"
    top = api.post(f"/v1/models/digits/predict?image={reference}&top_k=1").json()
    best = top["predictions"][0][0]
    assert best["class_index"] == mistake["predicted"]
    assert best["probability"] == pytest.approx(mistake["probability"], rel=1e-4)
    by_id = api.post(f"/v1/models/digits/predict?image_id={reference}&top_k=1").json()
    assert by_id["predictions"] == top["predictions"]
    maps = api.post(f"/v1/models/digits/feature-maps?image={reference}&layers=relu1&format=json")
    assert maps.status_code == 200 and maps.json()["batch"] == 1
    cam = api.post(f"/v1/models/digits/cam?image={reference}&format=json")
    assert cam.status_code == 200, cam.text


def test_a_folder_dataset_with_a_dead_channel_and_a_broken_file(api: TestClient) -> None:
    _, result = run_job(api, "/v1/models/deadnet/datasets/pets/analysis?layers=0,1&method=tsne")
    assert result["images"] == len(PET_CLASSES) * PER_CLASS
    assert result["skipped"] == [
        {"index": PER_CLASS, "reason": f"pets[{PER_CLASS}] is not a decodable image"}
    ]
    assert PER_CLASS not in result["indices"]
    check_arithmetic(result)
    conv, relu = result["layers"]
    assert relu["dead_channels"] == [DEAD_CHANNEL] and relu["dead_fraction"] == 1 / WIDTH
    assert conv["dead_fraction"] is None and conv["dead_channels"] == []
    assert result["embedding"]["layer"] == "1"  # the last layer with spatial output


def test_unmatched_class_names_give_null_figures(api: TestClient) -> None:
    _, result = run_job(api, "/v1/models/deadnet/datasets/shapes/analysis?method=pca")
    assert result["images"] == 2 * PER_CLASS and result["classes"] == ["round", "square"]
    for field in ("accuracy", "confusion", "misclassified", "predicted"):
        assert result[field] is None
    assert result["embedding"]["predicted"] is None
    assert result["embedding"]["labels"] == [0] * PER_CLASS + [1] * PER_CLASS
    assert [layer["name"] for layer in result["layers"]] == ["0", "1", "2", "3", "4"]


def test_limit_draws_the_same_seeded_sample(api: TestClient) -> None:
    url = f"{DIGITS}?layers=relu3&method=pca&limit=60&seed=5"
    first, again = run_job(api, url)[1], run_job(api, url)[1]
    assert first["images"] == 60 and first["indices"] == sorted(set(first["indices"]))
    assert first["indices"] == again["indices"] and first["embedding"] == again["embedding"]
    other = run_job(api, url.replace("seed=5", "seed=6"))[1]
    assert other["indices"] != first["indices"]
    check_arithmetic(first)


@pytest.mark.parametrize(
    ("url", "status", "field"),
    [
        ("/v1/models/digits/datasets/nope/analysis", 404, "dataset"),
        (f"{DIGITS}?limit=1", 422, "limit"),
        (f"{DIGITS}?limit=100001", 422, "limit"),
        (f"{DIGITS}?limit=3&method=tsne", 422, "limit"),
        (f"{DIGITS}?method=umap", 422, "method"),
        (f"{DIGITS}?embedding_layer=fc", 422, "embedding_layer"),
        (f"{DIGITS}?embedding_layer=nope", 404, "embedding_layer"),
        (f"{DIGITS}?layers=relu1,nope", 404, "layers"),
        ("/v1/models/nope/datasets/digits/analysis", 404, "model"),
        ("/v1/models/digits/predict?image=dataset:nope/1", 404, "image"),
        ("/v1/models/digits/predict?image=dataset:digits/1797", 422, "image"),
        ("/v1/models/digits/predict?image=dataset:digits/x", 422, "image"),
        ("/v1/models/digits/predict?image_id=dataset:pets/99", 422, "image_id"),
    ],
)
def test_bad_input_names_the_field(api: TestClient, url: str, status: int, field: str) -> None:
    body = error_body(api.post(url), status, field)
    if url.startswith("/v1/models/digits/datasets/nope"):
        assert body["choices"] == ["digits", "pets", "shapes"]


def test_a_dataset_picture_is_served_as_stored(api: TestClient) -> None:
    digit = api.get("/v1/datasets/digits/images/17")
    assert digit.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(digit.content)).size == (32, 32)
    pet = api.get(f"/v1/datasets/pets/images/{PER_CLASS + 1}")
    assert pet.headers["content-type"] == "image/png"
    assert pet.content == api.app.state.datasets.get("pets").read(PER_CLASS + 1)
    for url, status, field in (
        ("/v1/datasets/nope/images/0", 404, "dataset"),
        ("/v1/datasets/pets/images/13", 404, "index"),
        (f"/v1/datasets/pets/images/{PER_CLASS}", 415, "index"),  # the broken file
    ):
        answer = api.get(url)
        assert (answer.status_code, answer.json()["field"]) == (status, field), answer.text
