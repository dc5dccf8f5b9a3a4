"""Contributions, unit= targets, concepts and TCAV over HTTP on the digits model, a
torchvision CNN and a timm ViT (token layers read as maps), each against Captum or the engine
run on the same input."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pytest
import torch
from captum.attr import LayerGradientXActivation, NeuronGradient
from fastapi.testclient import TestClient
from PIL import Image

from model_registry.registry import LoadedModel
from service.app import create_app
from service.engine.concepts.factorize import compute_concepts, plan_concepts
from service.engine.concepts.tcav import plan_tcav, run_tcav
from service.settings import Settings
from tests.dataset_support import pictures
from tests.helpers import files, load_npy, png
from tests.numerics import assert_float32_close
from tests.routes.test_units_api import run_job
from tests.routes.test_units_models_api import write_cnn_and_vit
from tests.tiny_models import model_batch


class Served(NamedTuple):
    model: str
    layer: str
    size: int
    prefix: int  # tokens before the patch grid (0 for a CNN's [B, C, H, W] maps)
    unit: str
    selector: tuple[int, ...]  # the same unit as Captum's neuron selector on the raw output


SERVED = [
    Served("digits", "relu3", 32, 0, "relu3:5@2,3", (5, 2, 3)),
    Served("tv", "layer2", 64, 0, "layer2:3@2,5", (3, 2, 5)),
    Served("tvit", "blocks.1", 32, 1, "blocks.1:3@1,2", (1 + 1 * 4 + 2, 3)),
]
IDS = [s.model for s in SERVED]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = write_cnn_and_vit(tmp_path_factory.mktemp("unit-tools"))
    with TestClient(create_app(Settings(models=config, device="cpu", torch_threads=1))) as client:
        yield client


def _uploads(served: Served) -> tuple[list, list[Image.Image]]:
    """Two pictures at the model's own size (no resize), as uploads and as the model's batch."""
    raw = [png(p) for p in pictures(7, 2, size=served.size)]
    return files(*raw), [Image.open(io.BytesIO(r)).convert("RGB") for r in raw]


def _model(api: TestClient, served: Served) -> LoadedModel:
    return api.app.state.registry.get(served.model)


def _untouched(model: LoadedModel) -> None:
    assert not any(m._forward_hooks for m in model.module.modules())
    assert all(p.grad is None for p in model.module.parameters())


@pytest.mark.parametrize("served", SERVED, ids=IDS)
def test_contributions_equal_captum_grad_x_act(api: TestClient, served: Served) -> None:
    uploads, images = _uploads(served)
    url = f"/v1/models/{served.model}/contributions?layer={served.layer}&target=2&format=npy"
    answer = api.post(url, files=uploads)
    assert answer.status_code == 200, answer.text
    model = _model(api, served)
    batch = model_batch(model, images)
    layer = model.module.get_submodule(served.layer)
    theirs = LayerGradientXActivation(model.module, layer).attribute(batch, target=2).detach()
    summed = theirs[:, served.prefix :].sum(1) if served.prefix else theirs.sum((2, 3))
    assert_float32_close(torch.from_numpy(load_npy(answer.content)), summed)
    _untouched(model)


@pytest.mark.parametrize("served", SERVED, ids=IDS)
def test_a_unit_target_equals_captum_neuron_gradient(api: TestClient, served: Served) -> None:
    uploads, images = _uploads(served)
    url = f"/v1/models/{served.model}/gradients?method=vanilla&unit={served.unit}&format=npy"
    answer = api.post(url, files=uploads)
    assert answer.status_code == 200, answer.text
    model = _model(api, served)
    batch = model_batch(model, images)
    layer = model.module.get_submodule(served.layer)
    theirs = NeuronGradient(model.module, layer).attribute(batch, served.selector).detach()
    assert_float32_close(torch.from_numpy(load_npy(answer.content)), theirs)
    _untouched(model)


@pytest.mark.parametrize("served", SERVED, ids=IDS)
def test_concepts_equal_the_engine(api: TestClient, served: Served) -> None:
    """The engine's DFF equals pytorch-grad-cam's (tests/engine/test_concepts_reference.py)."""
    uploads, images = _uploads(served)
    params = {"layer": served.layer, "k": 2, "format": "npy"}
    answer = api.post(f"/v1/models/{served.model}/concepts", params=params, files=uploads)
    assert answer.status_code == 200, answer.text
    model = _model(api, served)
    plan = plan_concepts(model, layer=served.layer, k=2, top=3)
    expected = compute_concepts(model, model_batch(model, images), plan).heatmaps
    values = load_npy(answer.content)
    assert values.shape == (2, 2, served.size, served.size)
    np.testing.assert_allclose(values, expected, atol=1e-4)


@pytest.mark.parametrize("served", SERVED, ids=IDS)
def test_tcav_equals_the_engine_on_the_same_pictures(api: TestClient, served: Served) -> None:
    """runs=2 over the test's folder; the engine's sign counts equal Captum's for one CAV
    (tests/engine/test_tcav.py)."""
    chosen = (0, 5, 9)
    images = ",".join(f"dataset:noise/{i}" for i in chosen)
    query = f"layers={served.layer}&concepts=noise/red&random=noise&target=1&runs=2&samples=4"
    url = f"/v1/models/{served.model}/tcav?image={images}&{query}&seed=3"
    result = run_job(api, url).json()
    (score,) = result["scores"]
    assert (score["layer"], score["concept"], result["inputs"]) == (served.layer, "noise/red", 3)
    model = _model(api, served)
    datasets = api.app.state.datasets
    plan = plan_tcav(
        model,
        datasets,
        layers=[served.layer],
        concepts=["noise/red"],
        random="noise",
        target=1,
        runs=2,
        samples=4,
        seed=3,
    )
    noise = datasets.get("noise")
    batch = model_batch(model, [Image.open(io.BytesIO(noise.read(i))) for i in chosen])
    (expected,) = run_tcav(model, batch, plan, max_pixels=1 << 24).scores
    assert score["score_mean"] == pytest.approx(float(np.mean(expected.scores)), abs=1e-6)
    assert score["random_mean"] == pytest.approx(float(np.mean(expected.random_scores)), abs=1e-6)
    assert 0 <= score["score_mean"] <= 1 and score["score_std"] >= 0
    assert (score["p_value"] is None) == (expected.p_value is None)
    if expected.p_value is not None:
        assert score["p_value"] == pytest.approx(expected.p_value, rel=1e-6)
    _untouched(model)
