"""/contributions with /cam's dense targets over HTTP: a detection box, a segmentation region."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import error_body, files, load_npy, png


@pytest.fixture(scope="module")
def upload(photo_images: dict[str, Image.Image]) -> bytes:
    return png(photo_images["china.jpg"].resize((150, 100), Image.Resampling.BILINEAR))


def _post(client, path: str, upload: bytes, **params):
    return client.post(f"/v1/models/{path}", params=params, files=files(upload))


def test_a_detection_box_is_the_target(dense_client, upload: bytes) -> None:
    boxes = _post(dense_client, "det/predict", upload).json()["detections"][0]
    options = {"layer": "backbone.fpn.layer_blocks.0", "detection": "0"}
    body = _post(dense_client, "det/contributions", upload, top=3, **options).json()
    target = body["items"][0]["target"]
    assert target["class_index"] == boxes[0]["class_index"]
    np.testing.assert_allclose(target["box"], boxes[0]["box"], atol=0.01)
    values = load_npy(
        _post(dense_client, "det/contributions", upload, format="npy", **options).content
    )
    assert values.shape == (1, body["channel_count"]) and np.isfinite(values).all()
    assert [c["channel"] for c in body["channels"]] == list(np.argsort(-values[0])[:3])


def test_a_segmentation_region_is_the_target(dense_client, upload: bytes) -> None:
    body = _post(
        dense_client, "seg/contributions", upload, layer="backbone.16", target="tree", region="all"
    ).json()
    assert (
        body["items"][0]["target"]["pixels"] > 0 and body["items"][0]["target"]["label"] == "tree"
    )
    answer = _post(dense_client, "seg/contributions", upload, layer="backbone.16", box="0,0,9,9")
    error_body(answer, 422, "box")
