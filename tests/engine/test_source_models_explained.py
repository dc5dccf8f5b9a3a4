"""timm, Hugging Face and python-factory models explained like torchvision's, no user code.

References are computed independently: forward hooks reshaped by hand, pytorch-grad-cam
with the `reshape_transform` its documentation asks for token layers, and Captum.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from PIL import Image
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam, compute_gradients
from service.engine.attribution.plan import plan_cam, plan_gradients
from service.engine.feature_maps import compute_feature_maps, plan_feature_maps
from service.engine.images import preprocess


class Case(NamedTuple):
    model: str
    layer: str
    prefix_tokens: int | None  # None: not tokens ([B, C, H, W] or Swin's [B, H, W, C])


CASES = [
    Case("tvit", "blocks.1.norm1", 1),  # class token
    Case("tdeit", "blocks.1.norm1", 2),  # class + distillation tokens
    Case("hvit", "vit.layers.1.layernorm_before", 1),
    Case("tswin", "layers.1.blocks.0.norm1", None),  # channels-last [B, H, W, C]
    Case("tcnn", "layer4", None),
    Case("py", "blocks.1", None),
]
IDS = [c.model for c in CASES]


def reshape_for(case: Case):
    """pytorch-grad-cam's reshape_transform for this layer, written out by hand."""

    def tokens(tensor: torch.Tensor) -> torch.Tensor:
        patches = tensor[:, case.prefix_tokens :, :]
        side = int(round(patches.shape[1] ** 0.5))
        return patches.reshape(tensor.shape[0], side, side, -1).permute(0, 3, 1, 2)

    def channels_last(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.permute(0, 3, 1, 2) if case.model == "tswin" else tensor

    return tokens if case.prefix_tokens is not None else channels_last


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from sklearn.datasets import load_sample_images

    return Image.fromarray(load_sample_images().images[1])  # flower.jpg, 427 x 640


def batch_of(model: LoadedModel, photo: Image.Image) -> torch.Tensor:
    return preprocess(
        [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], model.spec, model.device
    )


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


def second_class(model: LoadedModel, batch: torch.Tensor) -> int:
    with torch.inference_mode():
        return int(model.module(batch[:1]).topk(2, dim=1).indices[0, 1])


def trainable_copy(model: LoadedModel) -> torch.nn.Module:
    module = copy.deepcopy(model.module)
    for param in module.parameters():
        param.requires_grad_(True)
    return module


def blank(model: LoadedModel, n: int) -> np.ndarray:
    return np.zeros((n, *model.spec.input_size, 3), np.uint8)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_feature_maps_equal_forward_hooks_reshaped(
    case: Case, source_models: dict[str, LoadedModel], photo: Image.Image
) -> None:
    model = source_models[case.model]
    batch = batch_of(model, photo)
    plan = plan_feature_maps(model, layers=[case.layer], channels="all", reduce="none")
    ours = compute_feature_maps(model, batch, plan, inputs=blank(model, 2)).layers[0].values
    seen: list[torch.Tensor] = []
    handle = model.module.get_submodule(case.layer).register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach().clone())
    )
    try:
        with torch.inference_mode():
            model.module(batch)
    finally:
        handle.remove()
    expected = reshape_for(case)(seen[-1]).numpy()
    assert ours.shape == expected.shape and ours.shape[2] * ours.shape[3] > 1
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    assert model.module.get_submodule(case.layer)._forward_hooks == {}


CAMS = [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus), ("xgradcam", XGradCAM)]
CAMS += [("layercam", LayerCAM), ("scorecam", ScoreCAM)]


@pytest.mark.parametrize("method, cls", CAMS, ids=[m for m, _ in CAMS])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cams_equal_pytorch_grad_cam(
    case: Case,
    method: str,
    cls: type,
    source_models: dict[str, LoadedModel],
    photo: Image.Image,
) -> None:
    model = source_models[case.model]
    batch = batch_of(model, photo)
    target = second_class(model, batch)
    plan = plan_cam(model, method=method, layers=[case.layer], targets=str(target))
    ours = compute_cam(model, batch, plan, inputs=blank(model, 2)).layers[0].maps
    reference = trainable_copy(model)
    layer = reference.get_submodule(case.layer)
    with cls(model=reference, target_layers=[layer], reshape_transform=reshape_for(case)) as cam:
        expected = cam(input_tensor=batch.clone(), targets=[ClassifierOutputTarget(target)] * 2)
    assert ours.shape == (2, 1, *model.spec.input_size)
    for image in range(2):
        if expected[image].max() > 0:
            assert pearson(ours[image, 0], expected[image]) >= 0.99, image
        else:
            assert ours[image, 0].max() == 0


GRADIENTS = {
    "vanilla": lambda m, x, t: Saliency(m).attribute(x, target=t, abs=False),
    "input-x-gradient": lambda m, x, t: InputXGradient(m).attribute(x, target=t),
    "integrated-gradients": lambda m, x, t: IntegratedGradients(m).attribute(
        x, baselines=torch.zeros_like(x), target=t, n_steps=32, method="riemann_trapezoid"
    ),
}


@pytest.mark.parametrize("method", GRADIENTS)
@pytest.mark.parametrize("name", ["tvit", "tdeit", "hvit", "tswin", "tcnn", "py"])
def test_gradient_methods_equal_captum(
    name: str, method: str, source_models: dict[str, LoadedModel], photo: Image.Image
) -> None:
    model = source_models[name]
    batch = batch_of(model, photo)[:1]
    target = second_class(model, batch)
    plan = plan_gradients(model, method=method, targets=str(target), steps=32)
    ours = compute_gradients(model, batch, plan, inputs=blank(model, 1)).values[0, 0]
    x = batch.clone().requires_grad_(True)
    expected = GRADIENTS[method](trainable_copy(model), x, target).detach().numpy()[0]
    assert ours.shape == expected.shape
    assert pearson(ours, expected) >= 0.99
