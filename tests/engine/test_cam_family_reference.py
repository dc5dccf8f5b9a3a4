"""The rest of pytorch-grad-cam's CAM family against pytorch-grad-cam itself, on a seeded
resnet18 at 64 px and a real photo, for classes that are not the top-1 (issue 27)."""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import EigenGradCAM, GradCAMElementWise
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam
from service.engine.attribution.plan import plan_cam
from tests.tiny_models import model_batch, pearson, second_class


class Reference(NamedTuple):
    method: str
    cls: type
    layer: str


def trainable_copy(model: LoadedModel) -> torch.nn.Module:
    """pytorch-grad-cam hooks gradients only on outputs that require grad, and swaps modules."""
    module = copy.deepcopy(model.module)
    for param in module.parameters():
        param.requires_grad_(True)
    return module


def reference_cam(
    cls: type,
    module: torch.nn.Module,
    layers: list[str],
    batch: torch.Tensor,
    targets: list[int],
    **call: object,
) -> np.ndarray:
    """pytorch-grad-cam's [B, H, W] maps, min-max scaled as it returns them."""
    modules = dict(module.named_modules())
    with cls(model=module, target_layers=[modules[name] for name in layers]) as cam:
        wanted = [ClassifierOutputTarget(t) for t in targets]
        return cam(input_tensor=batch.clone(), targets=wanted, **call)


@pytest.fixture(scope="module")
def two_photos(resnet: LoadedModel, photo: Image.Image) -> torch.Tensor:
    """The photo and its mirror image: two images whose maps differ."""
    batch = model_batch(resnet, [photo])
    return torch.cat([batch, batch.flip(3) * 0.8])


def ours(
    model: LoadedModel, batch: torch.Tensor, method: str, layers: list[str], targets: list[int]
) -> np.ndarray:
    """layerscope's maps [B, H, W] for one target per image (the same class for all)."""
    plan = plan_cam(model, method=method, layers=layers, targets=str(targets[0]), normalize=True)
    blank = np.zeros((len(batch), *model.spec.input_size, 3), np.uint8)
    result = compute_cam(model, batch, plan, inputs=blank)
    return result.layers[0].maps[:, 0]


GRADIENT_TIMES_ACTIVATION = [
    Reference("gradcam-elementwise", GradCAMElementWise, "layer3"),
    Reference("gradcam-elementwise", GradCAMElementWise, "layer4"),
    Reference("eigengradcam", EigenGradCAM, "layer3"),
    Reference("eigengradcam", EigenGradCAM, "layer4"),
]


@pytest.mark.parametrize(
    "ref",
    GRADIENT_TIMES_ACTIVATION,
    ids=[f"{r.method}-{r.layer}" for r in GRADIENT_TIMES_ACTIVATION],
)
def test_gradient_times_activation_cams_match_pytorch_grad_cam(
    ref: Reference, resnet: LoadedModel, two_photos: torch.Tensor
) -> None:
    """EigenGradCAM's principal component keeps LAPACK's sign as pytorch-grad-cam's does: a
    flipped sign would give a negative or near-zero correlation after the ReLU."""
    target = second_class(resnet, two_photos[:1])
    maps = ours(resnet, two_photos, ref.method, [ref.layer], [target])
    expected = reference_cam(
        ref.cls, trainable_copy(resnet), [ref.layer], two_photos, [target, target]
    )
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    for image in range(2):
        assert maps[image].max() > 0
        assert pearson(maps[image], expected[image]) >= 0.99
        np.testing.assert_allclose(maps[image], expected[image], atol=2e-3)
