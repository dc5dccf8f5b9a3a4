"""A `pt2:` program served over HTTP answers like the model it was exported from.

References run on the original `nn.Module`: forward hooks, pytorch-grad-cam and Captum.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from urllib.parse import quote

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from fastapi.testclient import TestClient
from PIL import Image
from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from model_registry.registry import LoadedModel
from service.app import create_app
from service.engine.images import preprocess
from service.settings import Settings
from tests.helpers import files, load_npy, png
from tests.numerics import assert_float32_close
from tests.pt2_models import export_to, pt2_entry, residual_net

BASE = "/v1/models/net"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("pt2-api")
    (folder / "models.toml").write_text(
        pt2_entry("net", export_to(residual_net(), folder / "n.pt2"))
    )
    settings = Settings(models=folder / "models.toml", device="cpu", worker_threads=2)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def served(api: TestClient) -> LoadedModel:
    return api.app.state.registry.get("net")


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(img).resize((96, 64)) for img in load_sample_images().images]


@pytest.fixture(scope="module")
def batch(served: LoadedModel, pictures: list[Image.Image]) -> torch.Tensor:
    """What the service feeds the model for `pictures` (its own preprocessing)."""
    return preprocess(pictures, served.spec, served.device)


def post(api: TestClient, endpoint: str, pictures: list[Image.Image]) -> np.ndarray:
    answer = api.post(f"{BASE}/{endpoint}", files=files(*(png(np.asarray(p)) for p in pictures)))
    assert answer.status_code == 200, answer.text
    return load_npy(answer.content)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


def trainable(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).requires_grad_(True)


def test_layers_are_the_original_named_modules_with_each_call(api: TestClient) -> None:
    answer = api.get(f"{BASE}/layers")
    assert answer.status_code == 200, answer.text
    layers = answer.json()["data"]
    assert [lay["name"] for lay in layers if lay["call"] is None] == [
        n for n, _ in residual_net().named_modules() if n
    ]
    relu = {lay["name"]: lay for lay in layers if lay["name"].startswith("layer1.0.relu")}
    assert set(relu) == {"layer1.0.relu", "layer1.0.relu#0", "layer1.0.relu#1"}
    listed = {m["name"]: m for m in api.get("/v1/models").json()["data"]}
    assert listed["net"]["architecture"].startswith("pt2:") and listed["net"]["pretrained"]


@pytest.mark.parametrize("layer", ["stem", "layer1.0.relu#0", "layer1.0.relu#1", "layer2"])
def test_feature_maps_equal_the_original_models_hooks(
    layer: str, api: TestClient, pictures: list[Image.Image], batch: torch.Tensor
) -> None:
    query = f"layers={quote(layer)}&format=npy&channels=all"  # '#' would start a fragment
    ours = post(api, f"feature-maps?{query}", pictures)
    original = residual_net()
    name, _, call = layer.partition("#")
    seen: list[torch.Tensor] = []
    handle = original.get_submodule(name).register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach().clone())
    )
    try:
        with torch.inference_mode():
            original(batch)
    finally:
        handle.remove()
    expected = seen[int(call) if call else -1].numpy()
    assert ours.shape == expected.shape
    # The server runs another batch composition (or kernel) than this reference: float32
    # rounding of another summation order, see tests/numerics.py.
    assert_float32_close(ours, expected)


@pytest.mark.parametrize("layer", ["layer1.1", "layer2.conv2", "layer2"])
def test_gradcam_equals_pytorch_grad_cam_on_the_original(
    layer: str, api: TestClient, pictures: list[Image.Image], batch: torch.Tensor
) -> None:
    target = 2
    ours = post(api, f"cam?method=gradcam&layer={layer}&target={target}&format=npy", pictures)
    reference = trainable(residual_net())
    with GradCAM(model=reference, target_layers=[reference.get_submodule(layer)]) as cam:
        expected = cam(input_tensor=batch.clone(), targets=[ClassifierOutputTarget(target)] * 2)
    assert ours.shape[0] == 2 and ours.shape[-2:] == expected.shape[-2:]
    for image in range(2):
        assert expected[image].max() > 0
        assert pearson(ours[image], expected[image]) >= 0.99, image


def test_gradients_flow_through_the_program_as_through_the_original(
    api: TestClient, pictures: list[Image.Image], batch: torch.Tensor
) -> None:
    target = 1
    ours = post(api, f"gradients?method=vanilla&target={target}&format=npy", pictures)
    x = batch.clone().requires_grad_(True)
    expected = Saliency(trainable(residual_net())).attribute(x, target=target, abs=False)
    assert ours.size == expected.numel() and np.abs(ours).max() > 0
    for image in range(2):
        assert pearson(ours[image], expected[image].detach().numpy()) >= 0.99, image


def test_guided_backprop_reaches_the_programs_relus(
    api: TestClient, pictures: list[Image.Image], batch: torch.Tensor
) -> None:
    """The program calls aten.relu, not nn.ReLU: the override must reach it too."""
    target = 3
    ours = post(api, f"gradients?method=guided-backprop&target={target}&format=npy", pictures)
    vanilla = post(api, f"gradients?method=vanilla&target={target}&format=npy", pictures)
    guided = GuidedBackpropReLUModel(trainable(residual_net()), device="cpu")
    for image in range(2):
        expected = guided(batch[image : image + 1].clone(), target_category=target)
        expected = np.transpose(expected, (2, 0, 1))  # it answers [H, W, C]
        assert pearson(ours[image], expected) >= 0.99, image
        assert pearson(ours[image], vanilla[image]) < 0.9, image


def _method_names(kind: str) -> list[str]:
    from service.engine.attribution.methods.registry import cam_methods, gradient_methods

    return [m.name for m in (cam_methods() if kind == "cam" else gradient_methods())]


def _cam_endpoints() -> list[str]:
    """Each CAM as the registry declares it: with `layer=layer2` where it takes a layer."""
    from service.engine.attribution.methods.registry import cam_methods

    return [
        f"cam?method={m.name}" + ("&layer=layer2" if m.uses_layer else "")
        for m in cam_methods()
        # rollout, legrad: ViTs only; fullgrad: a program's modules are no Conv2d/BatchNorm2d
        if m.name not in ("cam", "rollout", "legrad", "fullgrad")
    ]


@pytest.mark.parametrize(
    "endpoint",
    _cam_endpoints() + [f"gradients?method={m}&layer=layer2" for m in _method_names("gradients")],
)
def test_every_method_but_cam_answers_on_the_program(
    endpoint: str, api: TestClient, pictures: list[Image.Image]
) -> None:
    maps = post(api, f"{endpoint}&target=0&format=npy", pictures[:1])
    assert maps.shape[0] == 1 and maps.shape[-2:] == (32, 32) and np.isfinite(maps).all()
    assert np.abs(maps).max() > 0


def test_cam_is_refused_naming_the_layer_types_it_needs(
    api: TestClient, pictures: list[Image.Image]
) -> None:
    """CAM looks for an nn.Linear classifier; the program's layers are InterpreterModules."""
    answer = api.post(
        f"{BASE}/cam?method=cam&layer=layer2", files=files(png(np.asarray(pictures[0])))
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] in ("method", "layer")


def test_fullgrad_is_refused_saying_the_program_has_no_biases_it_reads(
    api: TestClient, pictures: list[Image.Image]
) -> None:
    """FullGrad reads the biases of Conv2d and BatchNorm2d modules, as pytorch-grad-cam's
    does; an unflattened program has InterpreterModules instead."""
    answer = api.post(f"{BASE}/cam?method=fullgrad", files=files(png(np.asarray(pictures[0]))))
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "method" and "has none" in answer.json()["detail"]
