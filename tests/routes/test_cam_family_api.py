"""The CAM family of issue 27 over HTTP: listed by /v1/methods, every format, bad options."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from service.engine.images import preprocess
from tests.engine.test_cam_family_reference import trainable_copy
from tests.helpers import error_body, files, load_npy

CAM = "/v1/models/digits/cam"
NEW_METHODS = [
    "gradcam-elementwise",
    "eigengradcam",
    "finercam",
    "shapleycam",
    "kpcacam",
    "fullgrad",
]


def test_new_methods_are_listed_with_their_family(app_client) -> None:
    listed = {m["name"]: m for m in app_client.get("/v1/methods").json()["data"]}
    for name in NEW_METHODS:
        assert listed[name]["kind"] == "cam"
        assert listed[name]["needs_gradients"] is (name != "kpcacam")
    spec = app_client.get("/openapi.json").json()
    paths = [p for p in spec["paths"] if p.endswith("/cam")]
    parameters = spec["paths"][paths[0]]["post"]["parameters"]
    method = next(p for p in parameters if p["name"] == "method")
    schema = method["schema"]
    choices = (
        schema.get("enum")
        or spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]["enum"]
    )
    assert set(NEW_METHODS) <= set(choices)


@pytest.mark.parametrize("method", ["gradcam-elementwise", "eigengradcam"])
def test_gradient_times_activation_cams_answer_every_format(
    method: str, app_client, digit_pngs: list[bytes]
) -> None:
    images = files(*digit_pngs[:2])
    png = app_client.post(f"{CAM}?method={method}", files=images)
    assert png.status_code == 200, png.text
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    npy = app_client.post(
        f"{CAM}?method={method}&format=npy&target=3,7&normalize=true", files=images
    )
    assert npy.status_code == 200, npy.text
    maps = load_npy(npy.content)
    assert maps.shape == (2, 2, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and np.isclose(maps.max(), 1)
    assert not np.allclose(maps[:, 0], maps[:, 1])  # class-specific, unlike EigenCAM
    body = app_client.post(f"{CAM}?method={method}&format=json", files=images).json()
    assert body["method"] == method and len(body["maps"]) == 2
    assert base64.b64decode(body["png_base64"])[:4] == b"\x89PNG"


def test_unknown_cam_method_names_the_new_ones(app_client, digit_pngs: list[bytes]) -> None:
    answer = app_client.post(f"{CAM}?method=eigen-grad-cam", files=files(digit_pngs[0]))
    body = error_body(answer, 422, None)
    assert "eigengradcam" in str(body)


def test_eigen_and_aug_smooth_over_http_equal_pytorch_grad_cam(
    app_client, digits, digit_pngs: list[bytes]
) -> None:
    """The served digits model is the `digits` fixture: the answer equals pytorch-grad-cam's
    GradCAM with both smoothings on it, for the same class."""
    query = "method=gradcam&layer=relu3&target=4&format=npy"
    plain = load_npy(app_client.post(f"{CAM}?{query}", files=files(digit_pngs[3])).content)
    answer = app_client.post(
        f"{CAM}?{query}&eigen_smooth=true&aug_smooth=true", files=files(digit_pngs[3])
    )
    assert answer.status_code == 200, answer.text
    smoothed = load_npy(answer.content)
    assert smoothed.shape == plain.shape == (1, 32, 32)
    assert smoothed.min() >= 0 and smoothed.max() <= 1
    module = trainable_copy(digits)
    batch = preprocess([Image.open(io.BytesIO(digit_pngs[3]))], digits.spec, digits.device)
    with GradCAM(model=module, target_layers=[module.relu3]) as cam:
        expected = cam(
            input_tensor=batch,
            targets=[ClassifierOutputTarget(4)],
            eigen_smooth=True,
            aug_smooth=True,
        )
    assert np.corrcoef(smoothed.ravel(), expected.ravel())[0, 1] >= 0.99
    assert not np.allclose(smoothed, plain / max(plain.max(), 1e-7), atol=1e-3)


def test_aggregate_layers_answers_one_map_for_all(app_client, digit_pngs: list[bytes]) -> None:
    images = files(*digit_pngs[:2])
    query = "method=gradcam&layer=relu2,relu3&aggregate_layers=true"
    npy = app_client.post(f"{CAM}?{query}&format=npy", files=images)
    assert npy.status_code == 200, npy.text
    maps = load_npy(npy.content)
    assert maps.shape == (2, 32, 32) and maps.min() >= 0
    assert np.allclose(maps.reshape(2, -1).max(axis=1), 1, atol=1e-5)
    body = app_client.post(f"{CAM}?{query}&format=json", files=images).json()
    assert body["layers"] == [
        {"name": "relu2+relu3", "map_shape": [128, 8, 8], "shape": [2, 32, 32]}
    ]
    assert {item["layer"] for item in body["maps"]} == {"relu2+relu3"}
    png = app_client.post(f"{CAM}?{query}", files=images)
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    one = app_client.post(f"{CAM}?method=gradcam&layer=relu3&aggregate_layers=true", files=images)
    assert "two or more" in error_body(one, 422, "aggregate_layers")["detail"]


@pytest.mark.parametrize("method", ["finercam", "shapleycam", "kpcacam"])
def test_second_order_comparative_and_kernel_cams_answer(
    method: str, app_client, digit_pngs: list[bytes]
) -> None:
    images = files(*digit_pngs[:2])
    npy = app_client.post(f"{CAM}?method={method}&format=npy&target=3,7", files=images)
    assert npy.status_code == 200, npy.text
    maps = load_npy(npy.content)
    assert maps.shape == (2, 2, 32, 32) and maps.dtype == np.float32 and maps.min() >= 0
    assert maps.max() > 0
    if method == "kpcacam":  # class-agnostic
        np.testing.assert_array_equal(maps[:, 0], maps[:, 1])
    else:
        assert not np.allclose(maps[:, 0], maps[:, 1])
    body = app_client.post(f"{CAM}?method={method}&format=json", files=images).json()
    assert body["method"] == method and len(body["maps"]) == 2


def test_fullgrad_reads_every_bias_and_takes_no_layer(app_client, digit_pngs: list[bytes]) -> None:
    images = files(*digit_pngs[:2])
    npy = app_client.post(f"{CAM}?method=fullgrad&format=npy&target=3,7", files=images)
    assert npy.status_code == 200, npy.text
    maps = load_npy(npy.content)
    assert maps.shape == (2, 2, 32, 32) and maps.min() >= 0 and maps.max() > 0
    assert not np.allclose(maps[:, 0], maps[:, 1])
    answer = app_client.post(f"{CAM}?method=fullgrad&layer=relu3", files=images)
    detail = error_body(answer, 422, "layer")["detail"]
    assert "fullgrad" in detail and "no layer" in detail
