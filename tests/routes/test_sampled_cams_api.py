"""sscam, iscam and smoothgradcam++ over HTTP: the served digits model answers as torchcam
does under the same seed, and their parameters are refused where they do not belong."""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image
from torchcam.methods import ISCAM, SSCAM, SmoothGradCAMpp

from service.engine.images import preprocess
from tests.engine.test_torchcam_reference import torchcam_maps
from tests.helpers import error_body, files, load_npy
from tests.tiny_models import pearson

CAM = "/v1/models/digits/cam"


class Served(NamedTuple):
    method: str
    query: str
    cls: type
    torchcam: dict[str, float]


SERVED = [
    Served("sscam", "samples=2&noise=1.5&seed=5", SSCAM, {"num_samples": 2, "std": 1.5}),
    Served("iscam", "samples=2", ISCAM, {"num_samples": 2}),
    Served(
        "smoothgradcam++",
        "samples=3&noise=0.2&seed=5",
        SmoothGradCAMpp,
        {"num_samples": 3, "std": 0.2},
    ),
]


@pytest.mark.parametrize("case", SERVED, ids=[c.method for c in SERVED])
def test_sampled_cams_answer_as_torchcam(
    case: Served, app_client, digits, digit_pngs: list[bytes]
) -> None:
    """The served digits model is the `digits` fixture."""
    method = case.method.replace("+", "%2B")
    answer = app_client.post(
        f"{CAM}?method={method}&layer=relu2&target=3&format=npy&{case.query}",
        files=files(digit_pngs[4]),
    )
    assert answer.status_code == 200, answer.text
    maps = load_npy(answer.content)
    assert maps.shape == (1, 32, 32) and maps.dtype == np.float32  # one target: [B, H, W]
    batch = preprocess([Image.open(io.BytesIO(digit_pngs[4]))], digits.spec, digits.device)
    expected = torchcam_maps(case.cls, digits, batch, "relu2", 3, 5, **case.torchcam)
    assert maps.max() > 0
    assert pearson(maps[0], expected[0]) >= 0.99


def test_methods_list_their_layer_use_and_sampling_defaults(app_client) -> None:
    listed = {m["name"]: m for m in app_client.get("/v1/methods").json()["data"]}
    assert (
        listed["fullgrad"]["uses_layer"] is False
        and "layer" not in listed["fullgrad"]["parameters"]
    )
    assert listed["gradcam"]["uses_layer"] is True
    assert listed["guided-gradcam"]["uses_layer"] is True
    assert listed["occlusion"]["uses_layer"] is False
    assert all(isinstance(m["uses_layer"], bool) for m in listed.values())
    assert listed["sscam"]["parameters"] == {"layer": None, "samples": 35, "noise": 2.0, "seed": 0}
    assert listed["iscam"]["parameters"] == {"layer": None, "samples": 10}
    assert listed["smoothgradcam++"]["parameters"] == {
        "layer": None,
        "samples": 4,
        "noise": 0.3,
        "seed": 0,
    }
    assert listed["smoothgradcam++"]["needs_gradients"] is True


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("method=gradcam&samples=4", "samples"),
        ("method=iscam&seed=3", "seed"),
        ("method=sscam&samples=65", "samples"),
        ("method=sscam&noise=-1", "noise"),
    ],
)
def test_sampling_parameters_are_refused_by_name(
    app_client, digit_pngs: list[bytes], query: str, field: str
) -> None:
    answer = app_client.post(f"{CAM}?{query}", files=files(digit_pngs[0]))
    body = error_body(answer, 422, None)
    assert field in str(body)
