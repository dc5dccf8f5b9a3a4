"""The rest of pytorch-grad-cam's CAM family against pytorch-grad-cam itself, on a seeded
resnet18 at 64 px and a real photo, for classes that are not the top-1 (issue 27)."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import (
    KPCA_CAM,
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    FinerCAM,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    ShapleyCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.explain import compute_cam
from service.engine.attribution.methods.fullgrad import _scaled, _scaled_sum
from service.engine.attribution.plan import plan_cam
from service.samples import digit_samples
from tests.numerics import assert_float32_close
from tests.tiny_models import loaded, model_batch, pearson, second_class, seeded


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


@pytest.fixture(scope="module")
def digit(digits: LoadedModel) -> torch.Tensor:
    """One real digit for the trained digits model (64 channels at relu2: cheap to perturb)."""
    return model_batch(digits, list(digit_samples(1, start=3).values()))


def ours(
    model: LoadedModel,
    batch: torch.Tensor,
    method: str,
    layers: list[str],
    targets: list[int],
    **options: object,
) -> np.ndarray:
    """layerscope's maps [B, H, W] for one target per image (the same class for all)."""
    options = {"normalize": True, **options}
    plan = plan_cam(model, method=method, layers=layers, targets=str(targets[0]), **options)
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


class Smoothed(NamedTuple):
    method: str
    cls: type
    model: str
    layer: str


SMOOTHED = [
    Smoothed("gradcam", GradCAM, "resnet", "layer3"),
    Smoothed("gradcam++", GradCAMPlusPlus, "resnet", "layer3"),
    Smoothed("xgradcam", XGradCAM, "resnet", "layer4"),
    Smoothed("layercam", LayerCAM, "resnet", "layer3"),
    Smoothed("hirescam", HiResCAM, "resnet", "layer4"),
    Smoothed("gradcam-elementwise", GradCAMElementWise, "resnet", "layer3"),
    Smoothed("cam", GradCAM, "resnet", "layer4"),  # Grad-CAM's weights equal CAM's there
    Smoothed("eigencam", EigenCAM, "resnet", "layer3"),  # already a projection: unchanged
    Smoothed("scorecam", ScoreCAM, "digits", "relu2"),
    Smoothed("ablationcam", AblationCAM, "digits", "relu2"),
]


@pytest.mark.parametrize("ref", SMOOTHED, ids=[r.method for r in SMOOTHED])
def test_eigen_smooth_matches_pytorch_grad_cam(
    ref: Smoothed, request: pytest.FixtureRequest, two_photos: torch.Tensor, digit: torch.Tensor
) -> None:
    model: LoadedModel = request.getfixturevalue(ref.model)
    batch = two_photos[:1] if ref.model == "resnet" else digit
    target = second_class(model, batch)
    maps = ours(model, batch, ref.method, [ref.layer], [target], eigen_smooth=True)
    module = trainable_copy(model)
    expected = reference_cam(ref.cls, module, [ref.layer], batch, [target], eigen_smooth=True)
    assert maps[0].max() > 0
    assert pearson(maps[0], expected[0]) >= 0.99
    plain = reference_cam(ref.cls, module, [ref.layer], batch, [target])
    if ref.method != "eigencam":  # the projection is not the sum: the option did something
        assert pearson(maps[0], plain[0]) < 0.999


class Augmented(NamedTuple):
    method: str
    cls: type
    layer: str
    eigen: bool


AUGMENTED = [
    Augmented("gradcam", GradCAM, "relu3", False),
    Augmented("layercam", LayerCAM, "relu3", True),
    Augmented("eigengradcam", EigenGradCAM, "relu3", False),
]


@pytest.mark.parametrize("ref", AUGMENTED, ids=[r.method for r in AUGMENTED])
def test_aug_smooth_matches_pytorch_grad_cam(
    ref: Augmented, digits: LoadedModel, digit: torch.Tensor
) -> None:
    """Six augmentations (flip x 0.9, 1, 1.1); the mean of their [0, 1] maps, not rescaled."""
    batch = digit
    target = second_class(digits, batch)
    options = {"aug_smooth": True, "eigen_smooth": ref.eigen, "normalize": False}
    maps = ours(digits, batch, ref.method, [ref.layer], [target], **options)
    expected = reference_cam(
        ref.cls,
        trainable_copy(digits),
        [ref.layer],
        batch,
        [target],
        aug_smooth=True,
        eigen_smooth=ref.eigen,
    )
    assert maps.max() <= 1 + 1e-6
    assert pearson(maps[0], expected[0]) >= 0.99
    np.testing.assert_allclose(maps[0], expected[0], atol=5e-3)
    single = ours(digits, batch, ref.method, [ref.layer], [target], eigen_smooth=ref.eigen)
    assert pearson(maps[0], single[0]) < 0.9999  # the augmentations changed the map


def test_aug_smooth_is_refused_where_targets_do_not_flip(digits: LoadedModel) -> None:
    """Regions and boxes are fixed in input pixels: a flipped input would explain others."""
    segmenter = replace(digits, spec=replace(digits.spec, task="segmentation"))
    with pytest.raises(InvalidInput) as caught:
        plan_cam(segmenter, method="gradcam", layers=[], aug_smooth=True)
    assert caught.value.field == "aug_smooth" and "segmentation" in str(caught.value)
    assert plan_cam(digits, method="gradcam", layers=[], aug_smooth=True).aug_smooth


class Aggregated(NamedTuple):
    method: str
    cls: type
    model: str
    layers: list[str]
    aug: bool


AGGREGATED = [
    Aggregated("gradcam", GradCAM, "resnet", ["layer2", "layer3", "layer4"], False),
    Aggregated("layercam", LayerCAM, "resnet", ["layer3", "layer4"], False),
    Aggregated("gradcam", GradCAM, "digits", ["relu2", "relu3"], True),
]


@pytest.mark.parametrize("ref", AGGREGATED, ids=["gradcam", "layercam", "gradcam-aug"])
def test_several_layers_aggregate_as_pytorch_grad_cam(
    ref: Aggregated, request: pytest.FixtureRequest, two_photos: torch.Tensor, digit: torch.Tensor
) -> None:
    model: LoadedModel = request.getfixturevalue(ref.model)
    batch = two_photos[:1] if ref.model == "resnet" else digit
    target = second_class(model, batch)
    plan = plan_cam(
        model,
        method=ref.method,
        layers=ref.layers,
        targets=str(target),
        aggregate_layers=True,
        aug_smooth=ref.aug,
    )
    blank = np.zeros((1, *model.spec.input_size, 3), np.uint8)
    result = compute_cam(model, batch, plan, inputs=blank)
    assert [layer.name for layer in result.layers] == ["+".join(ref.layers)]
    maps = result.layers[0].maps[:, 0]
    expected = reference_cam(
        ref.cls, trainable_copy(model), ref.layers, batch, [target], aug_smooth=ref.aug
    )
    assert pearson(maps[0], expected[0]) >= 0.99
    np.testing.assert_allclose(maps[0], expected[0], atol=5e-3)


def test_aggregate_layers_needs_several(digits: LoadedModel) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_cam(digits, method="gradcam", layers=["relu3"], aggregate_layers=True)
    assert caught.value.field == "aggregate_layers"


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_kpcacam_matches_pytorch_grad_cam(
    layer: str, resnet: LoadedModel, two_photos: torch.Tensor
) -> None:
    maps = ours(resnet, two_photos, "kpcacam", [layer], [0])
    expected = reference_cam(KPCA_CAM, trainable_copy(resnet), [layer], two_photos, [0, 0])
    for image in range(2):
        assert maps[image].max() > 0
        assert pearson(maps[image], expected[image]) >= 0.99


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_finercam_matches_pytorch_grad_cam(
    layer: str, resnet: LoadedModel, two_photos: torch.Tensor
) -> None:
    """For a class that is not the top-1, against the three classes nearest it in logits."""
    batch = two_photos[:1]
    target = second_class(resnet, batch)
    maps = ours(resnet, batch, "finercam", [layer], [target])
    module = trainable_copy(resnet)
    with FinerCAM(model=module, target_layers=[dict(module.named_modules())[layer]]) as cam:
        expected = cam(input_tensor=batch.clone(), target_idx=target)
    assert maps[0].max() > 0
    assert pearson(maps[0], expected[0]) >= 0.99
    np.testing.assert_allclose(maps[0], expected[0], atol=2e-3)
    gradcam = ours(resnet, batch, "gradcam", [layer], [target])
    assert pearson(maps[0], gradcam[0]) < 0.999  # the comparison changed the map


@pytest.fixture(scope="module")
def silu_net() -> LoadedModel:
    """A seeded CNN with SiLUs: a logit that is not piecewise linear in the activations.
    (pytorch-grad-cam's ShapleyCAM cannot take a reshape_transform, so no transformer.)"""

    def build() -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 10),
        )

    return loaded("silu-net", seeded(build, seed=5), (32, 32), 10)


class ShapleyCase(NamedTuple):
    model: str
    layer: str


SHAPLEY = [
    ShapleyCase("resnet", "layer3"),  # piecewise linear: the second-order term is zero
    ShapleyCase("silu_net", "2"),  # SiLU after the layer: it is not
]


@pytest.mark.parametrize("case", SHAPLEY, ids=["resnet", "silu"])
def test_shapleycam_matches_pytorch_grad_cam(
    case: ShapleyCase, request: pytest.FixtureRequest, photo: Image.Image
) -> None:
    model: LoadedModel = request.getfixturevalue(case.model)
    batch = model_batch(model, [photo])
    target = second_class(model, batch)
    maps = ours(model, batch, "shapleycam", [case.layer], [target])
    module = trainable_copy(model)
    layer = dict(module.named_modules())[case.layer]
    with ShapleyCAM(model=module, target_layers=[layer]) as cam:
        expected = cam(input_tensor=batch.clone(), targets=[ClassifierOutputTarget(target)])
    assert maps[0].max() > 0
    assert pearson(maps[0], expected[0]) >= 0.99
    np.testing.assert_allclose(maps[0], expected[0], atol=1e-2)  # small weights: cancellation
    gradcam = ours(model, batch, "gradcam", [case.layer], [target])
    if case.model == "silu_net":
        assert not np.allclose(maps[0], gradcam[0], atol=1e-3)
    else:
        np.testing.assert_allclose(maps[0], gradcam[0], atol=1e-5)


def test_shapleycam_refuses_a_model_without_second_derivatives(
    tiny_vit: LoadedModel, photo: Image.Image
) -> None:
    """torch's CPU flash attention has no double backward: a 422 naming the method."""
    batch = model_batch(tiny_vit, [photo])
    plan = plan_cam(tiny_vit, method="shapleycam", layers=["encoder.layers.encoder_layer_0.ln_1"])
    with pytest.raises(InvalidInput) as caught:
        compute_cam(tiny_vit, batch, plan, inputs=np.zeros((1, 32, 32, 3), np.uint8))
    assert caught.value.field == "method" and "second derivatives" in str(caught.value)


def test_finercam_refuses_a_model_without_classes_to_compare(digits: LoadedModel) -> None:
    segmenter = replace(digits, spec=replace(digits.spec, task="segmentation"))
    with pytest.raises(InvalidInput) as caught:
        plan_cam(segmenter, method="finercam", layers=["relu3"])
    assert caught.value.field == "method" and "finercam" in str(caught.value)


@pytest.mark.parametrize("method", ["finercam", "shapleycam"])
def test_a_failure_in_a_methods_own_pass_leaves_no_trace(
    method: str, resnet: LoadedModel, two_photos: torch.Tensor
) -> None:
    """Finer-CAM and ShapleyCAM run a second pass with a graph: a failure there leaves no
    hook, no gradient and no changed flag on the shared model."""
    from tests.engine.test_shared_model import Boom, _fails_cleanly

    batch = two_photos[:1]
    plan = plan_cam(resnet, method=method, layers=["layer3"], targets="1", eigen_smooth=True)
    calls = {"n": 0}

    def explode(_module, _inputs, _output):
        calls["n"] += 1
        if calls["n"] >= 2:  # the method's own pass, after the shared one
            raise Boom("fc failed")

    blank = np.zeros((1, 64, 64, 3), np.uint8)
    _fails_cleanly(resnet, "fc", explode, lambda: compute_cam(resnet, batch, plan, inputs=blank))
    assert calls["n"] == 2


class FullGradCase(NamedTuple):
    model: str
    eigen: bool


FULLGRAD = [
    FullGradCase("resnet", False),  # batch norms' folded biases
    FullGradCase("digits", False),  # convolutions' own biases
    FullGradCase("resnet", True),
]


@pytest.mark.parametrize("case", FULLGRAD, ids=["resnet", "digits", "resnet-eigen"])
def test_fullgrad_matches_pytorch_grad_cam(
    case: FullGradCase,
    request: pytest.FixtureRequest,
    two_photos: torch.Tensor,
    digit: torch.Tensor,
) -> None:
    model: LoadedModel = request.getfixturevalue(case.model)
    batch = two_photos[:1] if case.model == "resnet" else digit
    target = second_class(model, batch)
    plan = plan_cam(
        model,
        method="fullgrad",
        layers=[],
        targets=str(target),
        normalize=True,
        eigen_smooth=case.eigen,
    )
    blank = np.zeros((1, *model.spec.input_size, 3), np.uint8)
    maps = compute_cam(model, batch, plan, inputs=blank).layers[0].maps[:, 0]
    module = trainable_copy(model)
    with FullGrad(model=module, target_layers=[]) as cam:
        expected = cam(
            input_tensor=batch.clone(),
            targets=[ClassifierOutputTarget(target)],
            eigen_smooth=case.eigen,
        )
    assert maps[0].max() > 0
    assert pearson(maps[0], expected[0]) >= 0.99
    np.testing.assert_allclose(maps[0], expected[0], atol=5e-3)


def test_fullgrad_refuses_a_layer_and_a_model_without_biases(digits: LoadedModel) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_cam(digits, method="fullgrad", layers=["relu3"])
    assert caught.value.field == "layer" and "fullgrad" in str(caught.value)

    def build() -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 4),
        )

    unbiased = loaded("unbiased", seeded(build), (16, 16), 4)
    with pytest.raises(InvalidInput) as caught:
        plan_cam(unbiased, method="fullgrad", layers=[])
    assert caught.value.field == "method" and "has none" in str(caught.value)


def test_fullgrad_sums_its_bias_maps_before_resizing_as_after() -> None:
    """Summing a layer's scaled channel maps at their own resolution, then resizing once,
    equals pytorch-grad-cam's resizing of every channel before the sum (resizing is linear)."""
    maps = torch.randn(2, 3, 64, 7, 7, generator=torch.Generator().manual_seed(4))
    summed = _scaled_sum(maps, (224, 224))
    assert summed.shape == (2, 3, 1, 224, 224)
    assert_float32_close(summed, _scaled(maps, (224, 224)).sum(dim=2, keepdim=True))
