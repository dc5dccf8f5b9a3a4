"""Every method `GET /v1/methods` lists, over HTTP, on a torchvision CNN, a timm ViT and the
digits model: a finite, non-constant map of the documented shape, or the documented 422
that says why the method does not apply. On the ViT, the methods no other test compares
there are compared with their reference (Captum, pytorch-grad-cam).

The methods are read from the registry that `/v1/methods` serves (checked equal below), so
a new method is swept without editing this file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import Deconvolution, FeatureAblation, GuidedBackprop, Occlusion
from fastapi.testclient import TestClient
from PIL import Image
from pytorch_grad_cam import KPCA_CAM, EigenCAM, EigenGradCAM, GradCAMElementWise, HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import save_file

from model_registry.config import load_config
from model_registry.registry import LoadedModel, load_model
from service.app import create_app
from service.engine.attribution.input_attributions import method_entries
from service.engine.attribution.methods.registry import cam_methods
from service.samples import digit_samples
from service.settings import Settings
from tests.helpers import (
    digits_entry,
    files,
    load_npy,
    png,
    resnet18_entry,
    seeded_resnet,
    toml_table,
)
from tests.source_models import TINY_VIT
from tests.tiny_models import model_batch, pearson

# Captum's guided backprop and deconvnet say they hook the ReLUs: expected.
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")

MODELS = ("tv", "tvit", "digits")
METHODS = [m.name for m in cam_methods()] + [e.name for e in method_entries()]
# The cheapest settings each parameter allows a meaningful map with.
FAST = {"steps": 2, "samples": 2, "mask": "grid:2", "window": 8, "stride": 8}
# The layer a layered method reads: resnet18's layer1 (64 channels, so the score CAMs make
# 64 passes, not 512), the ViT's last block's first norm (past it the patch tokens no
# longer reach the class token: docs/attribution.md#transformers), digits' default.
LAYER = {"tv": "layer1", "tvit": "blocks.1.norm1"}
# CAM reads the classifier's weights, so it takes only the layer before global pooling.
DEFAULT_LAYER_ONLY = {"cam"}
# The documented 422s: the method does not apply to this model, and the answer says why.
REFUSED = {
    ("rollout", "tv"): "vision transformer",
    ("rollout", "digits"): "vision transformer",
    ("legrad", "tv"): "vision transformer",
    ("legrad", "digits"): "vision transformer",
    ("lrp", "tvit"): "has no rule for layer",
    ("cam", "tvit"): "through global average pooling",  # the ViT pools its class token
    ("shapleycam", "tvit"): "needs second derivatives",  # timm's fused attention has none
}
VIT_TARGET = 1


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded torchvision resnet18 at 48 px (its layer4 still 2 x 2) whose weights the
    test writes, the tiny timm ViT of tests/source_models.py and the built-in digits."""
    folder = tmp_path_factory.mktemp("sweep")
    state = {k: v.contiguous() for k, v in seeded_resnet(7).state_dict().items()}
    save_file(state, str(folder / "tv.safetensors"))
    vit = toml_table(
        "models",
        name="tvit",
        architecture="timm:vit_tiny_patch16_224",
        num_classes=5,
        options=TINY_VIT,
    )
    cnn = resnet18_entry("tv", 10, size=48, weights="tv.safetensors")
    path = folder / "models.toml"
    path.write_text(cnn + vit + digits_entry())
    return path


@pytest.fixture(scope="module")
def api(models_file: Path) -> Iterator[TestClient]:
    settings = Settings(models=models_file, device="cpu", worker_threads=2)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def listed(api: TestClient) -> dict[str, dict]:
    answer = api.get("/v1/methods")
    assert answer.status_code == 200, answer.text
    return {m["name"]: m for m in answer.json()["data"]}


@pytest.fixture(scope="module")
def images(photo_images: dict[str, Image.Image]) -> dict[str, Image.Image]:
    digit = next(iter(digit_samples(1).values()))
    return {"tv": photo_images["china.jpg"], "tvit": photo_images["china.jpg"], "digits": digit}


def request_params(method: dict, model: str) -> dict[str, object]:
    """The method's own parameters at their cheapest, the model's layer, npy out."""
    params: dict[str, object] = {"method": method["name"], "format": "npy"}
    params |= {name: value for name, value in FAST.items() if name in method["parameters"]}
    layered = "layer" in method["parameters"] and method["name"] not in DEFAULT_LAYER_ONLY
    if layered and model in LAYER:
        params["layer"] = LAYER[model]
    return params


def ask(api: TestClient, listed: dict, method: str, model: str, image: Image.Image, **more):
    entry = listed[method]
    endpoint = entry["endpoints"][-1]  # /attributions serves the gradient methods too
    params = request_params(entry, model) | more
    return api.post(f"/v1/models/{model}/{endpoint}", params=params, files=files(png(image)))


def test_the_sweep_covers_every_listed_method(listed: dict[str, dict]) -> None:
    assert sorted(listed) == sorted(METHODS)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_answers_on_every_model(
    method: str, model: str, api: TestClient, listed: dict, images: dict
) -> None:
    answer = ask(api, listed, method, model, images[model])
    if (method, model) in REFUSED:
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert body["field"] in {"method", "layer"} and REFUSED[method, model] in body["detail"]
        return
    assert answer.status_code == 200, answer.text
    values = load_npy(answer.content)
    height, width = {"tv": (48, 48), "tvit": (32, 32), "digits": (32, 32)}[model]
    channels = 1 if model == "digits" else 3
    shape = (1, height, width) if listed[method]["kind"] == "cam" else (1, channels, height, width)
    assert values.shape == shape and values.dtype == np.float32
    assert np.isfinite(values).all()
    assert values.std() > 0, "a constant map explains nothing"


# ---- references on the ViT, for the methods no other test compares on one ---------------


def _tokens(tensor: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's reshape_transform for a ViT block: drop the class token, 4 x 4."""
    return tensor[:, 1:, :].reshape(tensor.shape[0], 4, 4, -1).permute(0, 3, 1, 2)


def _grad_cam(cls: type) -> Callable[[torch.nn.Module, torch.Tensor], np.ndarray]:
    def run(module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
        layer = module.get_submodule(LAYER["tvit"])
        with cls(model=module, target_layers=[layer], reshape_transform=_tokens) as cam:
            return cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(VIT_TARGET)])

    return run


def _captum(cls: type, **call: object) -> Callable[[torch.nn.Module, torch.Tensor], np.ndarray]:
    def run(module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
        x = x.clone().requires_grad_(cls in (GuidedBackprop, Deconvolution))
        return cls(module).attribute(x, target=VIT_TARGET, **call).detach().numpy()

    return run


VIT_REFERENCES = {
    "hirescam": _grad_cam(HiResCAM),
    "gradcam-elementwise": _grad_cam(GradCAMElementWise),
    "eigencam": _grad_cam(EigenCAM),
    "eigengradcam": _grad_cam(EigenGradCAM),
    "kpcacam": _grad_cam(KPCA_CAM),
    "guided-backprop": _captum(GuidedBackprop),
    "deconvnet": _captum(Deconvolution),
    # zero baseline, window (C, 8, 8), stride 8: FAST's, as the request sends them
    "occlusion": _captum(Occlusion, sliding_window_shapes=(3, 8, 8), strides=8),
    # grid:2 on 32 x 32: four 16 x 16 blocks, numbered row by row
    "feature-ablation": _captum(
        FeatureAblation,
        feature_mask=(torch.arange(32)[:, None] // 16 * 2 + torch.arange(32)[None] // 16)[
            None, None
        ],
    ),
}


@pytest.fixture(scope="module")
def vit(models_file: Path) -> LoadedModel:
    spec = next(s for s in load_config(models_file) if s.name == "tvit")
    return load_model(spec, torch.device("cpu"))


@pytest.mark.parametrize("method", sorted(VIT_REFERENCES))
def test_vit_answers_equal_their_reference(
    method: str, api: TestClient, listed: dict, images: dict, vit: LoadedModel
) -> None:
    answer = ask(api, listed, method, "tvit", images["tvit"], target=str(VIT_TARGET))
    assert answer.status_code == 200, answer.text
    ours = load_npy(answer.content)
    module = copy.deepcopy(vit.module)
    for param in module.parameters():
        param.requires_grad_(True)  # pytorch-grad-cam hooks only outputs that need grad
    expected = VIT_REFERENCES[method](module, model_batch(vit, [images["tvit"]]))
    assert ours.shape == np.shape(expected)
    r = pearson(ours, expected)
    print(f"{method} on a timm ViT: r = {r:.6f}")
    assert r >= 0.99
