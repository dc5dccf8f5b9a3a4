"""`layer:member` over HTTP: feature maps and CAMs of one tensor of a dict output, and a
422 that lists the members for a member the layer does not have."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from model_registry.registry import LoadedModel
from service.engine.images import preprocess
from tests.helpers import files, load_npy, png
from tests.numerics import assert_float32_close


@pytest.fixture(scope="module")
def upload(photo_images: dict[str, Image.Image]) -> Image.Image:
    return photo_images["china.jpg"].resize((150, 100), Image.Resampling.BILINEAR)


def _post(client, path: str, upload: Image.Image, **params):
    return client.post(f"/v1/models/{path}", params=params, files=files(png(upload)))


def test_feature_maps_of_a_member_equal_a_forward_hook(
    dense_client, dense_models: dict[str, LoadedModel], upload: Image.Image
) -> None:
    model = dense_models["det"]
    seen: list[torch.Tensor] = []
    handle = dict(model.module.named_modules())["backbone.fpn"].register_forward_hook(
        lambda _m, _i, out: seen.append(out["1"].detach())
    )
    try:
        with torch.inference_mode():
            model.module(preprocess([upload], model.spec, torch.device("cpu")))
    finally:
        handle.remove()
    answer = _post(
        dense_client,
        "det/feature-maps",
        upload,
        layers="backbone.fpn:1",
        channels="0-7",
        format="npy",
    )
    assert answer.status_code == 200, answer.text
    # The server runs another batch composition (or kernel) than this reference: float32
    # rounding of another summation order, see tests/numerics.py.
    assert_float32_close(load_npy(answer.content), seen[0][:, :8])


def test_cam_of_a_member(dense_client, upload: Image.Image) -> None:
    body = _post(
        dense_client, "det/cam", upload, layer="backbone.fpn:0", detection="0", format="json"
    ).json()
    assert body["maps"][0]["layer"] == "backbone.fpn:0" and body["maps"][0]["max"] > 0


@pytest.mark.parametrize(
    ("layer", "says"),
    [
        ("backbone.fpn:7", "'backbone.fpn' has no member '7'; its members are 0 [256,"),
        ("backbone.body.16:0", "'backbone.body.16' outputs a single tensor"),
    ],
)
def test_a_bad_member_is_422_listing_the_members(
    dense_client, upload: Image.Image, layer: str, says: str
) -> None:
    for path, field in (("det/cam", "layer"), ("det/feature-maps", "layers")):
        answer = _post(dense_client, path, upload, **{field: layer})
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field and says in answer.text


def test_the_refusal_of_a_dict_layer_names_the_member_syntax(dense_client, upload) -> None:
    answer = _post(dense_client, "det/cam", upload, layer="backbone.fpn")
    assert answer.status_code == 422
    assert "'backbone.fpn:<key or index>' (e.g. 'backbone.fpn:0')" in answer.text
