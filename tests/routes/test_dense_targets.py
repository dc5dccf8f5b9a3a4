"""/cam and /gradients on segmentation and detection models over HTTP: targets echoed with
their box or region, pictures that draw them, and every bad target a clear 422."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.helpers import files, png


@pytest.fixture(scope="module")
def upload(photo_images: dict[str, Image.Image]) -> bytes:
    return png(photo_images["china.jpg"].resize((150, 100), Image.Resampling.BILINEAR))


def _post(client, path: str, upload: bytes, **params):
    return client.post(f"/v1/models/{path}", params=params, files=files(upload))


def test_detection_cam_json_echoes_the_box(dense_client, upload: bytes) -> None:
    boxes = _post(dense_client, "det/predict", upload).json()["detections"][0]
    body = _post(dense_client, "det/cam", upload, detection="1", format="json").json()
    (target,) = body["targets"][0]
    assert target["class_index"] == boxes[1]["class_index"]
    np.testing.assert_allclose(target["box"], boxes[1]["box"], atol=0.01)
    assert body["predictions"] == [[]]
    assert body["maps"][0]["max"] > 0


def test_segmentation_gradients_echo_the_region(dense_client, upload: bytes) -> None:
    body = _post(
        dense_client, "seg/gradients", upload, target="road", region="0,0,40,30", format="json"
    ).json()
    assert body["targets"] == [[{"class_index": 2, "label": "road", "pixels": 1200}]]
    assert body["maps"][0]["max"] > body["maps"][0]["min"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("det/cam", {"detection": "0", "method": "eigencam"}),
        ("seg/cam", {"target": "tree", "region": "10,10,60,60"}),
    ],
)
def test_pictures_draw_the_target(dense_client, upload: bytes, path: str, params) -> None:
    answer = _post(dense_client, path, upload, **params)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))
    # The heatmap (right half) carries the white outline of the box or region.
    heatmap = picture[:, picture.shape[1] // 2 :]
    assert int((heatmap == 255).all(axis=2).sum()) > 100


@pytest.mark.parametrize(
    ("path", "params", "field", "says"),
    [
        ("det/cam", {"target": "cat", "box": "10,10,200,50"}, "box", "outside the picture"),
        ("det/cam", {"target": "cat", "box": "10,10,5"}, "box", "x0,y0,x1,y1"),
        ("det/cam", {"detection": "9"}, "detection", "has 8 detections"),
        ("det/cam", {"box": "1,1,50,50"}, "target", "exactly one target label"),
        ("det/gradients", {"target": "cat"}, "target", "goes with a box"),
        ("det/cam", {"region": "all"}, "region", "detection model"),
        ("seg/cam", {"target": "zebra"}, "target", "unknown label"),
        ("seg/cam", {"target": "7"}, "target", "valid: 0-4"),
        ("seg/gradients", {"region": "-1,0,10,10"}, "region", "0 <= x0 < x1 <= 96"),
        ("seg/cam", {"box": "1,1,5,5"}, "box", "segmentation model"),
        ("seg/cam", {"metrics": "deletion", "format": "json"}, "metrics", "segmentation"),
    ],
)
def test_bad_targets_are_422_naming_the_field(
    dense_client, upload: bytes, path: str, params, field: str, says: str
) -> None:
    answer = _post(dense_client, path, upload, **params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body.get("field") == field, body
    assert says in answer.text


def test_a_region_on_a_classifier_says_what_it_takes(tiny_client, tiny_inputs) -> None:
    answer = tiny_client.post(
        "/v1/models/tiny-resnet/cam", params={"region": "all"}, files=files(tiny_inputs[0])
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == "region"
    assert "classification model; its targets are target=<class>" in answer.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("det/cam", {"layer": "backbone.fpn"}),
        ("det/gradients", {"method": "guided-gradcam", "layer": "backbone.fpn"}),
        ("det/feature-maps", {"layers": "backbone.fpn"}),
    ],
)
def test_a_layer_with_several_tensors_is_refused_listing_them(
    dense_client, upload: bytes, path: str, params
) -> None:
    answer = _post(dense_client, path, upload, **params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] in ("layer", "layers")
    assert "outputs several tensors" in answer.text
    assert "0 [256," in answer.text and "pool [256," in answer.text
    assert "backbone.fpn.layer_blocks" in answer.text  # the tensor layers inside it


def test_feature_maps_of_a_detector_backbone(dense_client, upload: bytes) -> None:
    answer = _post(
        dense_client, "det/feature-maps", upload, layers="backbone.body.16", format="npy"
    )
    assert answer.status_code == 200, answer.text


def test_sanity_check_reuses_the_box(dense_client, upload: bytes) -> None:
    """randomize=1 re-runs on a re-initialized copy with the same box target."""
    body = _post(dense_client, "det/cam", upload, randomize=1, format="json").json()
    assert body["randomized_layers"] and body["targets"][0][0]["box"]
    assert body["maps"][0]["rank_correlation"] is not None
