"""POST /v1/models/{model}/contributions over HTTP: json and npy agree, inputs as /cam's."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model_registry.datasets import DigitsDataset
from tests.helpers import error_body, load_npy, run_job
from tests.insight_support import digit_pngs

URL = "/v1/models/digits/contributions"


@pytest.fixture(scope="module")
def uploads() -> list[tuple[str, tuple[str, bytes, str]]]:
    pngs, _ = digit_pngs(2)
    return [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(pngs)]


def test_json_lists_the_npy_values_largest_first(api: TestClient, uploads) -> None:
    query = "layer=relu3&target=3,5&top=4"
    values = load_npy(api.post(f"{URL}?{query}&format=npy", files=uploads).content)
    assert values.shape == (2, 2, 128) and values.dtype == np.float32
    body = api.post(f"{URL}?{query}", files=uploads).json()
    assert body["shape"] == [2, 2, 128] and body["channel_count"] == 128
    assert [(i["image"], i["target"]["class_index"]) for i in body["items"]] == [
        (0, 3),
        (0, 5),
        (1, 3),
        (1, 5),
    ]
    for item in body["items"]:
        row = values[item["image"], [3, 5].index(item["target"]["class_index"])]
        listed = [c["contribution"] for c in item["channels"]]
        assert [c["channel"] for c in item["channels"]] == list(np.argsort(-row, kind="stable")[:4])
        assert listed == sorted(listed, reverse=True)
        assert np.allclose(listed, np.sort(row)[::-1][:4], rtol=1e-6)
        assert item["total"] == pytest.approx(float(row.sum()), rel=1e-5, abs=1e-6)
    assert body["channels"] == body["items"][0]["channels"]


def test_one_target_is_b_by_c_and_dataset_pictures_work(api: TestClient) -> None:
    answer = api.post(
        f"{URL}?layer=conv2&method=conductance&steps=4&format=npy&image=dataset:digits/7"
    )
    assert answer.status_code == 200, answer.text
    assert load_npy(answer.content).shape == (1, 64)
    body = api.post(f"{URL}?layer=conv2&method=conductance&steps=4&image=dataset:digits/7").json()
    assert body["method"] == "conductance" and body["steps"] == 4 and body["baseline"] == "zero"


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("layer=nope", 404, "layer"),
        ("layer=relu3&top=0", 422, None),
        ("layer=relu3&steps=2000", 422, None),
        ("layer=relu3&target=12", 422, "target"),
        ("layer=relu3&box=0,0,4,4", 422, "box"),
        ("layer=relu3&method=saliency", 422, None),
    ],
)
def test_bad_input_names_the_field(
    api: TestClient, uploads, query: str, status: int, field
) -> None:
    error_body(api.post(f"{URL}?{query}", files=uploads[:1]), status, field)


def test_dataset_job_gives_the_matrix_of_the_per_picture_answers(api: TestClient) -> None:
    job, result = run_job(
        api, "/v1/models/digits/datasets/digits/contributions?layer=relu3&limit=12&seed=1&top=3"
    )
    assert job["progress"]["fraction"] == 1.0 and job["kind"] == "dataset_contributions"
    matrix = np.array([[np.nan if v is None else v for v in row] for row in result["matrix"]])
    assert matrix.shape == (10, 128) and result["images"] == 12
    counts = {row["label"]: row["images"] for row in result["classes"]}
    assert sum(counts.values()) == 12
    for row in result["classes"]:
        label = row["class_index"]
        if row["images"] == 0:
            assert np.isnan(matrix[label]).all() and row["channels"] == []
            continue
        order = np.argsort(-matrix[label], kind="stable")[:3]
        assert [c["channel"] for c in row["channels"]] == list(order)
    # one class's row, by hand: the per-picture answers of its pictures, averaged
    sampled = np.sort(np.random.default_rng(1).choice(1797, 12, replace=False))
    digits = DigitsDataset()
    label = digits.label(int(sampled[0]))
    mine = [int(i) for i in sampled if digits.label(int(i)) == label]
    refs = ",".join(f"dataset:digits/{i}" for i in mine)
    each = load_npy(api.post(f"{URL}?layer=relu3&target={label}&format=npy&image={refs}").content)
    np.testing.assert_allclose(matrix[label], each.mean(axis=0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("datasets/digits/contributions?layer=nope", 404, "layer"),
        ("datasets/nope/contributions?layer=relu3", 404, "dataset"),
        ("datasets/digits/contributions?layer=relu3&top=0", 422, None),
    ],
)
def test_dataset_job_bad_input(api: TestClient, query: str, status: int, field) -> None:
    error_body(api.post(f"/v1/models/digits/{query}"), status, field)


def test_contributions_to_a_unit(api: TestClient) -> None:
    body = api.post(f"{URL}?layer=relu2&unit=relu3:5@2,3&top=3&image=dataset:digits/4").json()
    assert body["items"][0]["target"]["unit"] == "relu3:5@2,3"
    error_body(api.post(f"{URL}?layer=relu3&unit=relu2:5&image=dataset:digits/4"), 422, "layer")
    error_body(
        api.post(f"{URL}?layer=relu2&unit=relu3:5&target=1&image=dataset:digits/4"), 422, "unit"
    )


def test_async_conductance_is_a_job_with_the_same_answer(api: TestClient) -> None:
    query = "layer=relu2&method=conductance&steps=40&top=5&image=dataset:digits/9"
    job, result = run_job(api, f"{URL}?{query}&async=true")
    assert job["kind"] == "contributions" and job["progress"]["total"] >= 1
    assert result == api.post(f"{URL}?{query}").json()
