"""unit= over HTTP on /cam, /gradients and /attributions: the unit is listed as the target."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import error_body, load_npy

BASE = "/v1/models/digits"
PICTURE = "image=dataset:digits/7"


@pytest.mark.parametrize(
    "route",
    [
        "cam?method=gradcam",
        "cam?method=scorecam&layer=relu2",
        "gradients?method=integrated-gradients&steps=8",
        "attributions?method=occlusion",
    ],
)
def test_a_unit_is_explained_and_listed(api: TestClient, route: str) -> None:
    answer = api.post(f"{BASE}/{route}&{PICTURE}&unit=relu3:5@2,3&format=json")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (target,) = body["targets"][0]
    assert target == {"class_index": 5, "label": "relu3:5@2,3", "unit": "relu3:5@2,3"}
    assert body["predictions"] == [[]]


@pytest.mark.parametrize(
    "route", ["cam?method=gradcam", "gradients?method=vanilla", "attributions?method=occlusion"]
)
def test_a_png_of_a_unit_past_the_class_count_is_drawn(api: TestClient, route: str) -> None:
    """Channel 32 of conv2 is no class of the 10: the panel is titled by the unit instead."""
    answer = api.post(f"{BASE}/{route}&{PICTURE}&unit=conv2:32&format=png")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(answer.content)).width > 0


def test_npy_of_a_unit_differs_from_the_class(api: TestClient) -> None:
    unit = load_npy(api.post(f"{BASE}/gradients?{PICTURE}&unit=relu3:5&format=npy").content)
    top1 = load_npy(api.post(f"{BASE}/gradients?{PICTURE}&format=npy").content)
    assert unit.shape == top1.shape and not np.allclose(unit, top1)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cam?unit=relu3:999", "unit"),
        ("cam?unit=relu3:1@9,9", "unit"),
        ("cam?unit=relu3:1&target=2", "unit"),
        ("cam?unit=relu2:1&layer=relu3", "layer"),
        ("cam?unit=relu3:1&method=fullgrad", "unit"),
        ("attributions?method=lrp&unit=relu3:1", "unit"),
        ("gradients?unit=relu3:1&randomize=1", "randomize"),
        ("cam?unit=nope:1", "unit"),
    ],
)
def test_bad_units_are_refused_by_name(api: TestClient, query: str, field: str) -> None:
    status = 404 if "nope" in query else 422
    error_body(api.post(f"{BASE}/{query}&{PICTURE}"), status, field)


def test_methods_list_says_which_explain_a_unit(api: TestClient) -> None:
    listed = {m["name"]: m for m in api.get("/v1/methods").json()["data"]}
    assert listed["gradcam"]["unit"] is True and "unit_refused" not in listed["gradcam"]
    assert listed["occlusion"]["unit"] is True
    assert listed["fullgrad"]["unit"] is False and "bias" in listed["fullgrad"]["unit_refused"]
    refused = {name for name, m in listed.items() if not m["unit"]}
    assert refused == {"fullgrad", "cam", "finercam", "legrad", "lrp"}
