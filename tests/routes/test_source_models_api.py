"""A models file mixing timm:, hf:, python: and torchvision: served by the real app.

Every endpoint answers on every model, and the answers carry the model's own values.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from model_registry.registry import LoadedModel
from service.app import create_app
from service.engine.images import fit_geometry, preprocess
from service.settings import Settings
from tests.helpers import files, load_npy, png


class Served(NamedTuple):
    name: str
    layer: str  # a layer shown as maps (tokens for the transformers)
    kernel_layer: str  # a convolution, for /filters


SERVED = [
    Served("tcnn", "layer3", "conv1"),
    Served("tvit", "blocks.1.norm1", "patch_embed.proj"),
    Served("tdeit", "blocks.1", "patch_embed.proj"),
    Served("tswin", "layers.1", "patch_embed.proj"),
    Served("hvit", "vit.layers.1.layernorm_before", "vit.embeddings.patch_embeddings.projection"),
    Served("py", "blocks.1", "stem"),
    Served("tv", "layer3", "conv1"),
]
IDS = [s.name for s in SERVED]


@pytest.fixture(scope="module")
def api(source_models_file: Path) -> Iterator[TestClient]:
    settings = Settings(models=source_models_file, device="cpu", worker_threads=2)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(img).resize((160, 107)) for img in load_sample_images().images]


@pytest.fixture(scope="module")
def uploads(pictures: list[Image.Image]) -> list[bytes]:
    return [png(np.asarray(p)) for p in pictures]


def ok(response) -> object:
    assert response.status_code == 200, response.text
    return response


def test_models_are_listed_with_their_sources(api: TestClient) -> None:
    listed = {m["name"]: m for m in ok(api.get("/v1/models")).json()["data"]}
    assert set(listed) == set(IDS)
    assert listed["hvit"]["architecture"].startswith("hf:")
    assert listed["py"]["architecture"].endswith("factory.py:make")
    assert ok(api.get("/readyz")).json()["models"] == IDS


@pytest.mark.parametrize("served", SERVED, ids=IDS)
def test_every_endpoint_answers_with_the_models_values(
    served: Served,
    api: TestClient,
    source_models: dict[str, LoadedModel],
    pictures: list[Image.Image],
    uploads: list[bytes],
) -> None:
    model = source_models[served.name]
    base = f"/v1/models/{served.name}"
    assert ok(api.get(base)).json()["name"] == served.name
    layers = ok(api.get(f"{base}/layers")).json()["data"]
    bare = [lay["name"] for lay in layers if lay["call"] is None]
    assert bare == [n for n, _ in model.module.named_modules() if n]

    batch = preprocess(pictures, model.spec, model.device)
    with torch.inference_mode():
        probs = model.module(batch).softmax(1)
    answer = ok(api.post(f"{base}/predict?top_k=2", files=files(*uploads))).json()
    expected_fit = fit_geometry((107, 160), model.spec).to_dict()
    assert answer["fitting"] == [expected_fit, expected_fit]
    assert expected_fit["resize"] == model.spec.resize
    for image, rows in enumerate(answer["predictions"]):
        assert rows[0]["class_index"] == int(probs[image].argmax())
        assert rows[0]["probability"] == pytest.approx(float(probs[image].max()), abs=1e-4)

    maps = load_npy(
        ok(
            api.post(
                f"{base}/feature-maps?layers={served.layer}&format=npy&channels=all",
                files=files(*uploads),
            )
        ).content
    )
    assert maps.shape[0] == 2 and maps.shape[-3:] == tuple(
        model.catalog.get(served.layer).spatial_shape
    )
    cam = load_npy(
        ok(api.post(f"{base}/cam?layer={served.layer}&format=npy", files=files(*uploads))).content
    )
    assert cam.shape[0] == 2 and cam.shape[-2:] == model.spec.input_size and np.isfinite(cam).all()
    grads = load_npy(ok(api.post(f"{base}/gradients?format=npy", files=files(*uploads))).content)
    assert grads.shape[0] == 2 and grads.shape[-2:] == model.spec.input_size
    assert np.abs(grads).max() > 0

    kernels = ok(api.get(f"{base}/layers/{served.kernel_layer}/filters?format=npy"))
    weight = model.module.get_submodule(served.kernel_layer).weight
    assert load_npy(kernels.content).shape[0] == weight.shape[0]
    shape = list(model.catalog.get(served.layer).spatial_shape)
    stats = ok(api.post(f"{base}/stats?layers={served.layer}", files=files(*uploads))).json()
    assert stats["layers"][0]["name"] == served.layer and stats["layers"][0]["shape"] == shape
    embedding = ok(
        api.post(
            f"{base}/embedding?layer={served.layer}",
            files=files(*uploads, *uploads),
            data={"labels": "a,b,a,b"},
        )
    ).json()
    assert embedding["feature_dim"] == shape[0] and len(embedding["points"]) == 4
    # Optimizing the input works on channels-first maps: the patch projection of a ViT.
    chw = served.layer if served.name in ("tcnn", "py", "tv") else served.kernel_layer
    picture = ok(api.post(f"{base}/layers/{chw}/maximize?channel=0&steps=2"))
    assert Image.open(io.BytesIO(picture.content)).size[::-1] == model.spec.input_size
    ok(api.post(f"{base}/layers/{chw}/invert?steps=2", files=files(uploads[0])))
    if chw != served.layer:
        refused = api.post(f"{base}/layers/{served.layer}/maximize?channel=0&steps=2")
        assert refused.status_code == 422 and refused.json()["field"] == "layer"
        assert served.kernel_layer in refused.json()["suitable"]


@pytest.mark.parametrize(
    "endpoint", ["feature-maps?layers=layer3", "cam?layer=layer3", "gradients"]
)
def test_json_answers_say_how_each_upload_was_fitted(
    endpoint: str, api: TestClient, source_models: dict[str, LoadedModel], uploads: list[bytes]
) -> None:
    """tcnn crops (timm's crop_pct 0.95): the box is the centre of the 160 x 107 upload."""
    spec = source_models["tcnn"].spec
    sep = "&" if "?" in endpoint else "?"
    body = ok(api.post(f"/v1/models/tcnn/{endpoint}{sep}format=json", files=files(*uploads))).json()
    expected = fit_geometry((107, 160), spec).to_dict()
    assert body["fitting"] == [expected, expected]
    left, top, right, bottom = expected["box"]
    assert expected["resize"] == "crop" and 0 < left < right < 160 and 0 <= top < bottom <= 107


@pytest.mark.parametrize("served", SERVED, ids=IDS)
def test_concepts_read_every_models_layer_as_maps(
    served: Served, api: TestClient, source_models: dict[str, LoadedModel], uploads: list[bytes]
) -> None:
    """DFF over conv maps, ViT tokens (prefix tokens dropped) and Swin's channels-last maps."""
    url = f"/v1/models/{served.name}/concepts"
    params = {"layer": served.layer, "k": 2, "format": "json"}
    body = ok(api.post(url, params=params, files=files(uploads[0]))).json()
    height, width = source_models[served.name].spec.input_size
    assert body["shape"] == [1, 2, height, width]
    for concept in body["concepts"]:
        assert (concept["classes"] is None) == (body["classes_note"] is not None)
        assert concept["strength"][0] >= 0
