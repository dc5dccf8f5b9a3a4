"""/cam and /gradients over HTTP: every method in every format, shapes, errors, never a 500."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import error_body

CAM_METHODS = [
    "gradcam",
    "finercam",
    "shapleycam",
    "gradcam++",
    "smoothgradcam++",
    "xgradcam",
    "layercam",
    "gradcam-elementwise",
    "hirescam",
    "cam",
    "scorecam",
    "sscam",
    "iscam",
    "eigencam",
    "kpcacam",
    "eigengradcam",
    "ablationcam",
    "fullgrad",
]
# CAMs read from a ViT's attention (tests/engine/test_transformer_methods.py); a CNN: 422
TRANSFORMER_CAMS = ["rollout", "legrad"]
GRADIENT_METHODS = [
    "vanilla",
    "guided-backprop",
    "deconvnet",
    "guided-gradcam",
    "input-x-gradient",
    "integrated-gradients",
    "smoothgrad",
]
# sscam and iscam pass samples x channels masked inputs: one sample keeps them quick
FAST = {
    "integrated-gradients": "&steps=4",
    "smoothgrad": "&samples=3",
    "sscam": "&samples=1",
    "iscam": "&samples=1",
}


def post(client, url: str, images: list[bytes]):
    return client.post(
        url, files=[("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    )


def is_png(body: bytes) -> bool:
    return body[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("method", CAM_METHODS)
def test_cam_every_method_every_format(method: str, app_client, digit_pngs: list[bytes]) -> None:
    images = digit_pngs[:2]
    fast = FAST.get(method, "")
    png = post(app_client, f"/v1/models/digits/cam?method={method}{fast}", images)
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png" and is_png(png.content)

    npy = post(app_client, f"/v1/models/digits/cam?method={method}&format=npy{fast}", images)
    assert npy.status_code == 200 and npy.headers["content-type"] == "application/x-npy"
    maps = np.load(io.BytesIO(npy.content))
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32 and maps.min() >= 0

    body = post(
        app_client, f"/v1/models/digits/cam?method={method}&format=json&top_k=3{fast}", images
    ).json()
    assert body["method"] == method and body["batch"] == 2 and body["input_size"] == [32, 32]
    assert body["layers"] == [{"name": "relu3", "map_shape": [128, 8, 8], "shape": [2, 32, 32]}]
    assert [len(p) for p in body["predictions"]] == [3, 3]
    assert [row[0]["class_index"] for row in body["targets"]] == [
        p[0]["class_index"] for p in body["predictions"]
    ]
    assert len(body["maps"]) == 2
    for item, array in zip(body["maps"], maps, strict=True):
        assert item["min"] == pytest.approx(float(array.min())) and item["max"] == pytest.approx(
            float(array.max())
        )
    assert is_png(base64.b64decode(body["png_base64"]))


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradients_every_method_every_format(
    method: str, app_client, digit_pngs: list[bytes]
) -> None:
    images = digit_pngs[:2]
    extra = FAST.get(method, "")
    for view in ("heatmap", "gradient", "positive", "negative"):
        png = post(
            app_client, f"/v1/models/digits/gradients?method={method}&view={view}{extra}", images
        )
        assert png.status_code == 200, png.text
        assert is_png(png.content)
    npy = post(app_client, f"/v1/models/digits/gradients?method={method}&format=npy{extra}", images)
    values = np.load(io.BytesIO(npy.content))
    assert (
        values.shape == (2, 1, 32, 32) and values.dtype == np.float32 and np.isfinite(values).all()
    )
    body = post(
        app_client, f"/v1/models/digits/gradients?method={method}&format=json{extra}", images
    ).json()
    assert body["shape"] == [2, 1, 32, 32] and len(body["maps"]) == 2
    assert body["maps"][0]["max"] == pytest.approx(float(values[0].max()))


def test_several_targets_and_layers_shapes(app_client, photo_png: bytes) -> None:
    url = "/v1/models/resnet18/cam?target=3,207,9&format=npy"
    maps = np.load(io.BytesIO(post(app_client, url, [photo_png, photo_png]).content))
    assert maps.shape == (2, 3, 64, 64)
    url = "/v1/models/resnet18/cam?layer=layer3,layer4&target=1,2&format=npy"
    response = post(app_client, url, [photo_png])
    assert response.headers["content-type"] == "application/zip"
    arrays = np.load(io.BytesIO(response.content))
    assert sorted(arrays.files) == ["layer3", "layer4"]
    assert arrays["layer3"].shape == arrays["layer4"].shape == (1, 2, 64, 64)
    body = post(
        app_client,
        "/v1/models/resnet18/cam?layer=layer4,layer3&target=1,2&format=json",
        [photo_png],
    ).json()
    assert [lay["name"] for lay in body["layers"]] == ["layer3", "layer4"]  # forward order
    assert body["layers"][0]["map_shape"] == [256, 4, 4] and body["layers"][0]["shape"] == [
        1,
        2,
        64,
        64,
    ]
    assert [(m["layer"], m["target"]) for m in body["maps"]] == [
        ("layer3", 1),
        ("layer3", 2),
        ("layer4", 1),
        ("layer4", 2),
    ]
    grads = post(
        app_client, "/v1/models/resnet18/gradients?target=1,2&format=npy", [photo_png, photo_png]
    )
    assert np.load(io.BytesIO(grads.content)).shape == (2, 2, 3, 64, 64)


def test_target_by_label_and_png_panel(app_client, digit_pngs: list[bytes]) -> None:
    body = post(
        app_client, "/v1/models/digits/cam?target=three,Seven&format=json", digit_pngs[:1]
    ).json()
    assert body["targets"] == [
        [{"class_index": 3, "label": "three"}, {"class_index": 7, "label": "seven"}]
    ]
    panel = Image.open(io.BytesIO(base64.b64decode(body["png_base64"])))
    assert panel.mode == "RGB" and panel.width > 3 * 128  # input + two heatmaps


def test_normalize_scales_each_map_to_unit_range(app_client, photo_png: bytes) -> None:
    url = "/v1/models/resnet18/cam?format=npy&normalize=true&target=5,6"
    maps = np.load(io.BytesIO(post(app_client, url, [photo_png]).content))
    assert np.allclose(maps.min(axis=(2, 3)), 0)
    top = maps.max(axis=(2, 3))
    assert np.all(np.isclose(top, 1, atol=1e-5) | (top == 0))  # an all-zero map stays zero
    assert np.isclose(top, 1, atol=1e-5).any()


def test_catalog_shows_spatial_shape(app_client) -> None:
    layers = {
        lay["name"]: lay for lay in app_client.get("/v1/models/resnet18/layers").json()["data"]
    }
    assert layers["layer4"]["spatial_shape"] == [512, 2, 2]
    assert layers["fc"]["spatial_shape"] == [1000, 1, 1] and not layers["fc"]["spatial"]


CAM, GRADIENTS = "/v1/models/digits/cam?", "/v1/models/digits/gradients?"
ERRORS = {
    "unknown-cam-method": (f"{CAM}method=gradcam3", 422, "method"),
    "unknown-gradient-method": (f"{GRADIENTS}method=lrp", 422, "method"),
    "unknown-baseline": (f"{GRADIENTS}method=integrated-gradients&baseline=noise", 422, "baseline"),
    "unknown-view": (f"{GRADIENTS}view=rgb", 422, "view"),
    "unknown-metric": (f"{CAM}format=json&metrics=deletion,pointing", 422, "metrics"),
    "target-too-big": (f"{CAM}target=10", 422, "target"),
    "target-negative": (f"{CAM}target=-1", 422, "target"),
    "target-unknown-label": (f"{CAM}target=tree", 422, "target"),
    "target-label-without-labels": ("/v1/models/resnet18/cam?target=cat", 422, "target"),
    "gradient-target-too-big": ("/v1/models/resnet18/gradients?target=1000", 422, "target"),
    "layer-not-spatial": (f"{CAM}layer=fc", 422, "layer"),
    "layer-unknown": (f"{CAM}layer=conv9", 404, "layer"),
    "cam-needs-pooling-next": (f"{CAM}method=cam&layer=conv3", 422, "layer"),
    "cam-channel-mismatch": (f"{CAM}method=cam&layer=conv2", 422, "layer"),
    "alpha-nan": (f"{CAM}alpha=nan", 422, "alpha"),
    "alpha-inf": (f"{CAM}alpha=inf", 422, "alpha"),
    "alpha-out-of-range": (f"{CAM}alpha=1.5", 422, "alpha"),
    "gradient-alpha-nan": (f"{GRADIENTS}alpha=NaN", 422, "alpha"),
    "noise-nan": (f"{GRADIENTS}method=smoothgrad&noise=nan", 422, "noise"),
    "noise-negative": (f"{GRADIENTS}method=smoothgrad&noise=-1", 422, "noise"),
    "steps-zero": (f"{GRADIENTS}method=integrated-gradients&steps=0", 422, "steps"),
    "metrics-need-json": (f"{CAM}metrics=deletion", 422, "metrics"),
    "randomize-needs-json": (f"{CAM}randomize=1&format=npy", 422, "randomize"),
    "randomize-too-many": (f"{CAM}randomize=99&format=json", 422, "randomize"),
    "colormap": (f"{CAM}colormap=rainbowz", 422, "colormap"),
    "top-k": (f"{CAM}format=json&top_k=11", 422, "top_k"),
    "upsample-unknown": (f"{GRADIENTS}method=guided-gradcam&upsample=cubic", 422, "upsample"),
    "guided-gradcam-two-layers": (
        f"{GRADIENTS}method=guided-gradcam&layer=relu2,relu3",
        422,
        "layer",
    ),
    "unknown-model": ("/v1/models/nope/cam", 404, "model"),
}


@pytest.mark.parametrize("url, status, field", ERRORS.values(), ids=ERRORS.keys())
def test_errors_name_the_field(
    url: str, status: int, field: str, app_client, digit_pngs: list[bytes]
) -> None:
    body = error_body(post(app_client, url, digit_pngs[:1]), status, field)
    if field in ("method", "baseline", "view"):
        assert body["choices"]
    if url.endswith("layer=fc"):
        assert "relu3" in body["suitable"] and "relu3" in body["detail"]


def test_method_choices_are_listed(app_client, digit_pngs: list[bytes]) -> None:
    body = post(app_client, "/v1/models/digits/cam?method=grad-cam", digit_pngs[:1]).json()
    assert body["choices"] == [*CAM_METHODS, *TRANSFORMER_CAMS]
    body = post(
        app_client,
        "/v1/models/digits/gradients?method=integrated-gradients&baseline=x",
        digit_pngs[:1],
    ).json()
    assert body["choices"] == ["zero", "black", "blur"]


@pytest.mark.parametrize(
    "query",
    [
        "method=cam&layer=relu2",
        "method=gradcam%20%20%20",
        "layer=relu3,relu3,bn3&target=0,0",
        "layer=conv1&method=scorecam&target=9",
        "target=%20,%20",
        "target=1,,2",
        "layer=,",
        "metric_steps=2&metrics=insertion&format=json",
        "alpha=0&colormap=gray",
        "alpha=1e308",
        "alpha=-0.0",
        "target=99999999999999999999",
    ],
)
def test_odd_cam_requests_never_500(query: str, app_client, digit_pngs: list[bytes]) -> None:
    response = post(app_client, f"/v1/models/digits/cam?{query}", digit_pngs[:1])
    assert response.status_code < 500, response.text
    json.loads(response.text) if response.headers["content-type"] == "application/json" else None


def test_bad_image_is_a_client_error(app_client) -> None:
    response = post(app_client, "/v1/models/digits/cam", [b"not an image"])
    assert response.status_code == 415
