"""/attributions over HTTP: every input-space method in every format, the gradient methods
answering as /gradients does, /v1/methods, parameters that do not belong, jobs."""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import error_body, files, load_npy
from tests.routes.test_attributions import GRADIENT_METHODS

URL = "/v1/models/digits/attributions"
INPUT_ONLY_METHODS = [
    "occlusion",
    "feature-ablation",
    "shapley-sampling",
    "kernelshap",
    "lime",
    "deeplift",
    "deeplift-shap",
    "gradient-shap",
    "lrp",
]
INPUT_METHODS_WITH_GRADIENTS = {"deeplift", "deeplift-shap", "gradient-shap", "lrp"}
FAST = {
    "integrated-gradients": {"steps": 4},
    "smoothgrad": {"samples": 3},
    "occlusion": {"window": 8, "stride": 8},
    "feature-ablation": {"mask": "grid:2"},
    "shapley-sampling": {"mask": "grid:2", "samples": 3},
    "kernelshap": {"mask": "grid:2", "samples": 8},
    "lime": {"mask": "grid:2", "samples": 8},
    "deeplift": {"baseline": "black"},
    "deeplift-shap": {"samples": 3},
    "gradient-shap": {"samples": 3, "noise": 0.1},
    "lrp": {"rule": "epsilon-gamma-box"},
}


@pytest.mark.parametrize("method", [*GRADIENT_METHODS, *INPUT_ONLY_METHODS])
def test_every_input_method_answers_every_format(
    method: str, app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    params = {"method": method, **FAST.get(method, {})}
    images = files(*digit_pngs[:2])
    png = app_client.post(URL, params=params, files=images)
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    npy = app_client.post(URL, params={**params, "format": "npy"}, files=images)
    values = load_npy(npy.content)
    assert values.shape == (2, 1, 32, 32) and values.dtype == np.float32
    assert np.isfinite(values).all() and np.abs(values).max() > 0
    body = app_client.post(URL, params={**params, "format": "json"}, files=images).json()
    assert body["method"] == method and body["shape"] == [2, 1, 32, 32]
    assert set(body["parameters"]) >= {k for k in FAST.get(method, {})}
    assert base64.b64decode(body["png_base64"])[:4] == b"\x89PNG"
    assert [m["image"] for m in body["maps"]] == [0, 1]
    assert body["maps"][0]["max"] == pytest.approx(float(values[0].max()))


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradient_methods_answer_as_gradients_does(
    method: str, app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    """One code path: the same request at /gradients and /attributions, the same bytes."""
    params = {"method": method, "target": "2,7", "format": "npy", **FAST.get(method, {})}
    images = files(*digit_pngs[:2])
    old = app_client.post("/v1/models/digits/gradients", params=params, files=images)
    new = app_client.post(URL, params=params, files=images)
    assert old.status_code == new.status_code == 200, new.text
    assert load_npy(new.content).shape == (2, 2, 1, 32, 32)
    assert np.array_equal(load_npy(new.content), load_npy(old.content))


def test_methods_lists_family_endpoints_and_parameters(app_client: TestClient) -> None:
    listed = {m["name"]: m for m in app_client.get("/v1/methods").json()["data"]}
    occlusion = listed["occlusion"]
    assert occlusion["family"] == "perturbation" and occlusion["endpoints"] == ["attributions"]
    assert occlusion["parameters"] == {"window": 16, "stride": 8, "baseline": "zero", "batch": 16}
    ablation = listed["feature-ablation"]["parameters"]
    assert ablation == {"mask": "grid:4", "baseline": "zero", "batch": 16}
    smooth = listed["smoothgrad"]
    assert smooth["family"] == "gradient" and smooth["endpoints"] == ["gradients", "attributions"]
    assert smooth["parameters"] == {"samples": 32, "noise": 0.15, "seed": 0}
    assert listed["gradcam"]["family"] == "cam" and listed["gradcam"]["endpoints"] == ["cam"]
    spec = app_client.get("/openapi.json").json()
    choices = spec["components"]["schemas"]["InputMethod"]["enum"]
    assert choices == [*GRADIENT_METHODS, *INPUT_ONLY_METHODS]


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"method": "vanilla", "window": 4}, "window", "vanilla"),
        ({"method": "occlusion", "steps": 4}, "steps", "occlusion"),
        ({"method": "smoothgrad", "batch": 4}, "batch", "smoothgrad"),
        ({"method": "occlusion", "window": 33}, "window", "32x32"),
        ({"method": "occlusion", "window": 4, "stride": 5}, "stride", "window"),
        ({"method": "occlusion", "baseline": "grey"}, "baseline", None),
        ({"method": "integrated-gradients", "baseline": "mean"}, "baseline", "mean"),
        ({"method": "smoothgrad", "samples": 1025}, "samples", None),
        ({"method": "occlusion", "batch": 0}, "batch", None),
        ({"method": "occlusion", "mask": "grid:2"}, "mask", "occlusion"),
        ({"method": "feature-ablation", "window": 4}, "window", "feature-ablation"),
        ({"method": "feature-ablation", "mask": "grid:33"}, "mask", "1024 pixels"),
        ({"method": "feature-ablation", "mask": "slic:2000"}, "mask", "1024 pixels"),
        ({"method": "feature-ablation", "mask": "squares:3"}, "mask", "grid:N"),
        ({"method": "feature-ablation", "mask": "grid:0"}, "mask", None),
        ({"method": "kernelshap", "samples": 1025}, "samples", None),
        ({"method": "lime", "window": 3}, "window", "lime"),
        ({"method": "shapley-sampling", "mask": "slic:1025"}, "mask", "1024 pixels"),
        ({"method": "feature-ablation", "seed": 1}, "seed", "feature-ablation"),
        ({"method": "deeplift", "baseline": "mean"}, "baseline", None),
        ({"method": "deeplift", "samples": 3}, "samples", "deeplift"),
        ({"method": "gradient-shap", "mask": "grid:2"}, "mask", "gradient-shap"),
        ({"method": "deeplift-shap", "samples": 2000}, "samples", None),
        ({"method": "vanilla", "noise": "loud"}, "noise", "smoothgrad_sq"),
        ({"method": "vanilla", "noise_level": 0.2}, "noise_level", "vanilla"),
        ({"method": "smoothgrad", "noise": "vargrad"}, "noise", "number"),
        ({"method": "deeplift", "noise": "vargrad"}, "noise", "deeplift"),
        ({"method": "guided-backprop", "noise": "vargrad", "noise_level": 11}, "noise_level", None),
        ({"method": "lrp", "rule": "z-plus"}, "rule", None),
        ({"method": "lrp", "baseline": "zero"}, "baseline", "lrp"),
        ({"method": "nope"}, "method", None),
        ({}, "method", None),
    ],
)
def test_bad_parameters_answer_422_naming_them(
    params: dict, field: str, words: str | None, app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    answer = app_client.post(URL, params=params, files=files(digit_pngs[0]))
    body = error_body(answer, 422, None)
    assert field in answer.text
    if words is not None:
        assert words in body["detail"]


@pytest.mark.parametrize("mask", ["grid:3", "slic:8"])
def test_feature_ablation_json_includes_the_mask(
    mask: str, app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    params = {"method": "feature-ablation", "mask": mask, "batch": 9}
    body = app_client.post(URL, params={**params, "format": "json"}, files=files(*digit_pngs[:2]))
    assert body.status_code == 200, body.text
    masks = np.array(body.json()["mask"])
    assert masks.shape == (2, 32, 32) and body.json()["parameters"]["mask"] == mask
    if mask == "grid:3":
        rows, cols = np.arange(32)[:, None] * 3 // 32, np.arange(32)[None, :] * 3 // 32
        assert np.array_equal(masks[0], rows * 3 + cols)
    npy = app_client.post(URL, params={**params, "format": "npy"}, files=files(*digit_pngs[:2]))
    values = load_npy(npy.content)[:, 0]
    for image in range(2):  # one value per feature: the feature's score drop
        for feature in np.unique(masks[image]):
            assert np.ptp(values[image][masks[image] == feature]) == 0


@pytest.mark.parametrize("method", ["shapley-sampling", "kernelshap", "lime"])
def test_sampling_methods_same_seed_same_answer(
    method: str, app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    params = {"method": method, "mask": "grid:3", "samples": 6, "format": "npy"}
    runs = [
        load_npy(
            app_client.post(
                URL, params={**params, "seed": seed}, files=files(digit_pngs[0])
            ).content
        )
        for seed in (4, 4, 5)
    ]
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_around_gradient_methods(
    kind: str, app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    params = {"method": "integrated-gradients", "steps": 3, "noise": kind, "samples": 4}
    body = app_client.post(URL, params={**params, "format": "json"}, files=files(digit_pngs[0]))
    assert body.status_code == 200, body.text
    used = body.json()["parameters"]
    assert used == {
        "steps": 3,
        "baseline": "zero",
        "noise": kind,
        "samples": 4,
        "seed": 0,
        "noise_level": 0.15,
    }
    npy = app_client.post(URL, params={**params, "format": "npy"}, files=files(digit_pngs[0]))
    values = load_npy(npy.content)
    assert values.shape == (1, 1, 32, 32) and np.abs(values).max() > 0
    if kind != "smoothgrad":
        assert values.min() >= -1e-6 * np.abs(values).max()  # mean of squares, variance


def _finished(client: TestClient, location: str) -> dict:
    for _ in range(1200):
        body = client.get(location).json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{location} did not finish")


def test_occlusion_as_a_job_reports_its_passes_and_answers_as_the_call_does(
    app_client: TestClient, digit_pngs: list[bytes]
) -> None:
    params = {"method": "occlusion", "window": 8, "stride": 4, "batch": 10, "format": "npy"}
    direct = app_client.post(URL, params=params, files=files(digit_pngs[0]))
    assert direct.status_code == 200, direct.text
    started = app_client.post(URL, params={**params, "async": "true"}, files=files(digit_pngs[0]))
    assert started.status_code == 202, started.text
    body = _finished(app_client, started.headers["location"])
    assert body["status"] == "succeeded", body
    # (32 - 8) / 4 + 1 = 7 windows a side: 49 perturbed passes, reported batch by batch.
    assert body["progress"]["step"] == body["progress"]["total"] == 49
    result = app_client.get(f"{started.headers['location']}/result")
    assert np.array_equal(load_npy(result.content), load_npy(direct.content))


@pytest.mark.parametrize(
    ("model", "params", "status", "field"),
    [
        ("seg", {"method": "occlusion", "window": 32, "stride": 32}, 200, None),
        ("det", {"method": "feature-ablation", "mask": "grid:2"}, 200, None),
        ("seg", {"method": "deeplift"}, 200, None),
        ("det", {"method": "deeplift"}, 422, "method"),
        ("seg", {"method": "vanilla", "noise": "vargrad"}, 422, "noise"),
    ],
)
def test_dense_models_take_the_methods_that_apply_to_them(
    model: str,
    params: dict,
    status: int,
    field: str | None,
    dense_client: TestClient,
    tiny_inputs: list[bytes],
) -> None:
    url = f"/v1/models/{model}/attributions"
    answer = dense_client.post(url, params={**params, "format": "npy"}, files=files(tiny_inputs[0]))
    if status == 422:
        error_body(answer, 422, field)
        return
    assert answer.status_code == 200, answer.text
    values = load_npy(answer.content)
    assert values.shape[0] == 1 and values.shape[1] == 3 and np.isfinite(values).all()
