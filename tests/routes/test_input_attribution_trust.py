"""The trust checks on /attributions: every input-space method takes `metrics=` and
`randomize=`, reported per map in json, as /cam and /gradients report them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from model_registry.registry import LoadedModel
from service.engine.attribution.faithfulness import deletion_insertion
from service.engine.images import preprocess
from tests.helpers import error_body, files, load_npy
from tests.routes.test_attributions import GRADIENT_METHODS
from tests.routes.test_input_attributions_api import FAST, INPUT_ONLY_METHODS, URL

TRUST = {"metrics": "deletion,insertion", "metric_steps": 8, "randomize": 1, "format": "json"}


@pytest.mark.parametrize("method", [*GRADIENT_METHODS, *INPUT_ONLY_METHODS])
def test_every_input_method_reports_auc_and_sanity(
    method: str, app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    params = {"method": method, **FAST.get(method, {}), "target": "3"}
    answer = app_client.post(URL, params={**params, **TRUST}, files=files(digit_pngs[0]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["randomized_layers"] == ["fc"]
    (item,) = body["maps"]
    assert 0 <= item["deletion"] <= 1 and 0 <= item["insertion"] <= 1
    assert item["rank_correlation"] is None or -1 <= item["rank_correlation"] <= 1
    # the maps themselves are those of a request without the checks
    plain = app_client.post(URL, params={**params, "format": "npy"}, files=files(digit_pngs[0]))
    assert item["max"] == pytest.approx(float(load_npy(plain.content).max()))


def test_auc_is_that_of_the_channel_summed_map(
    app_client: TestClient, digit_pngs: list[bytes], digits: LoadedModel
) -> None:
    """The AUCs equal `deletion_insertion` run here on the |npy| map summed over channels."""
    params = {"method": "occlusion", "window": 8, "stride": 4, "target": "3"}
    npy = app_client.post(URL, params={**params, "format": "npy"}, files=files(digit_pngs[1]))
    values = torch.from_numpy(load_npy(npy.content))  # [1, C, H, W]
    body = app_client.post(URL, params={**params, **TRUST}, files=files(digit_pngs[1])).json()
    batch = preprocess([Image.open(io.BytesIO(digit_pngs[1]))], digits.spec, torch.device("cpu"))
    curves = deletion_insertion(
        digits.module, batch, values.abs().sum(dim=1)[:, None], torch.tensor([[3]]), steps=8
    )
    for name in ("deletion", "insertion"):
        np.testing.assert_allclose(
            body["maps"][0][name], float(curves.auc[name][0, 0]), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"metrics": "deletion", "format": "png"}, "metrics"),
        ({"randomize": 1, "format": "npy"}, "randomize"),
        ({"metrics": "accuracy", "format": "json"}, "metrics"),
        ({"randomize": 99, "format": "json"}, "randomize"),
        ({"metrics": "deletion", "metric_steps": 1, "format": "json"}, "metric_steps"),
    ],
)
def test_bad_trust_options_answer_422_naming_them(
    query: dict[str, object], field: str, app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    answer = app_client.post(
        URL, params={"method": "occlusion", **query}, files=files(digit_pngs[0])
    )
    error_body(answer, 422, field)


def test_methods_say_which_cams_read_a_layer(
    app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    """The portal asks for a CAM's layer only where /v1/methods lists `layer` (FullGrad reads
    every bias of the model and refuses one)."""
    listed = {m["name"]: m for m in app_client.get("/v1/methods").json()["data"]}
    assert listed["gradcam"]["parameters"] == {"layer": None}
    assert listed["fullgrad"]["parameters"] == {}
    layered = app_client.post(
        "/v1/models/digits/cam",
        params={"method": "fullgrad", "layer": "relu3"},
        files=files(digit_pngs[0]),
    )
    error_body(layered, 422, "layer")
