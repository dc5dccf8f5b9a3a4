"""POST /v1/images, image_id on every POST endpoint, and the activation cache."""

from __future__ import annotations

import hashlib
import re

import numpy as np
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.helpers import files, load_npy

FM = "/v1/models/tiny-resnet/feature-maps"


def test_upload_returns_a_stable_id_and_the_size(tiny_client: TestClient, china_png: bytes) -> None:
    answer = tiny_client.post("/v1/images", files={"image": ("c.png", china_png, "image/png")})
    assert answer.status_code == 200
    body = answer.json()
    image_id = body["image_id"]  # an HMAC only this tenant's uploads recompute, not SHA-256
    assert (
        re.fullmatch("[0-9a-f]{64}", image_id) and image_id != hashlib.sha256(china_png).hexdigest()
    )
    again = tiny_client.post("/v1/images", files={"image": ("c.png", china_png, "image/png")})
    assert (
        body
        == again.json()
        == {
            "image_id": image_id,
            "width": 640,
            "height": 427,
            "format": "PNG",
            "bytes": len(china_png),
        }
    )
    assert (
        tiny_client.post("/v1/images", files={"image": ("x", b"nope", "image/png")}).status_code
        == 415
    )


def test_image_id_gives_the_same_answer_as_the_upload(
    tiny_client: TestClient, tiny_inputs: list[bytes]
) -> None:
    ids = [
        tiny_client.post("/v1/images", files={"image": ("p.png", data, "image/png")}).json()[
            "image_id"
        ]
        for data in tiny_inputs
    ]
    uploaded = load_npy(
        tiny_client.post(f"{FM}?layers=layer2&format=npy", files=files(*tiny_inputs)).content
    )
    by_id = load_npy(
        tiny_client.post(
            f"{FM}?layers=layer2&format=npy&image_id={ids[0]}&image_id={ids[1]}"
        ).content
    )
    comma = load_npy(
        tiny_client.post(f"{FM}?layers=layer2&format=npy&image_id={ids[0]},{ids[1]}").content
    )
    np.testing.assert_array_equal(uploaded, by_id)
    np.testing.assert_array_equal(uploaded, comma)
    prediction = tiny_client.post(f"/v1/models/tiny-resnet/predict?image_id={ids[1]}").json()
    assert len(prediction["predictions"]) == 1


def test_unknown_and_evicted_ids_are_404(
    tiny_config, tiny_inputs: list[bytes], china_png: bytes
) -> None:
    with TestClient(
        create_app(Settings(models=tiny_config, device="cpu", image_store_max_images=1))
    ) as client:
        first = client.post(
            "/v1/images", files={"image": ("a.png", tiny_inputs[0], "image/png")}
        ).json()["image_id"]
        client.post("/v1/images", files={"image": ("b.png", tiny_inputs[1], "image/png")})
        evicted = client.post(f"{FM}?image_id={first}")
        assert evicted.status_code == 404 and evicted.json()["field"] == "image_id"
        assert "POST /v1/images" in evicted.json()["detail"]
        assert client.post(f"{FM}?image_id=../../etc/passwd").status_code == 404
        assert client.post(f"{FM}?image_id={'0' * 64}").status_code == 404


def test_a_second_view_of_the_same_layer_skips_the_forward_pass(
    tiny_config, tiny_inputs: list[bytes]
) -> None:
    with TestClient(create_app(Settings(models=tiny_config, device="cpu"))) as client:
        image_id = client.post(
            "/v1/images", files={"image": ("a.png", tiny_inputs[0], "image/png")}
        ).json()["image_id"]
        cache = client.app.state.activations

        def forward_passes() -> float:
            for line in client.get("/metrics").text.splitlines():
                if line.startswith('layerscope_batch_size_count{model="tiny-resnet"}'):
                    return float(line.split()[-1])
            return 0.0

        all_channels = client.post(
            f"{FM}?image_id={image_id}&layers=layer3&channels=all&format=npy"
        )
        passes = forward_passes()
        top = client.post(f"{FM}?image_id={image_id}&layers=layer3&channels=top:4&format=npy")
        pca = client.post(
            f"{FM}?image_id={image_id}&layers=layer3&reduce=pca&channels=all&colormap=magma"
        )
        uploaded = client.post(
            f"{FM}?layers=layer3&channels=top:4&format=npy", files=files(tiny_inputs[0])
        )
        assert forward_passes() == passes  # three more views, no forward pass
        assert cache.hits >= 3
        assert top.content == uploaded.content  # an upload of the same bytes hits the cache too
        full = load_npy(all_channels.content)[0]
        order = full.mean(axis=(1, 2)).argsort()[::-1][:4]
        np.testing.assert_allclose(load_npy(top.content)[0], full[order], rtol=1e-6)
        assert pca.headers["content-type"] == "image/png"
        client.post(
            f"{FM}?image_id={image_id}&layers=layer2&format=npy"
        )  # a new layer: one more pass
        assert forward_passes() == passes + 1
