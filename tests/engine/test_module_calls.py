"""Every call of a reused module is addressable as `name#k`; a bare name is the last call.

torchvision's BasicBlock calls `self.relu` twice: after bn1 (call 0) and on the block's
sum (call 1, equal to the block's output). Feature maps, statistics and CAMs agree on it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from model_registry.errors import NotFound
from model_registry.registry import LoadedModel, load_model
from model_registry.spec import ModelSpec
from service.engine.attribution.explain import compute_cam
from service.engine.attribution.plan import plan_cam
from service.engine.feature_maps import compute_feature_maps, plan_feature_maps
from service.engine.images import preprocess
from service.engine.insight.stats import compute_stats, plan_stats

BLOCK = "layer1.0"
RELU = "layer1.0.relu"


@pytest.fixture(scope="module")
def resnet() -> LoadedModel:
    spec = ModelSpec(
        "rn",
        "torchvision:resnet18",
        None,
        (64, 64),
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        10,
    )
    return load_model(spec, torch.device("cpu"))


@pytest.fixture(scope="module")
def batch(resnet: LoadedModel) -> torch.Tensor:
    from sklearn.datasets import load_sample_images

    pictures = [Image.fromarray(img) for img in load_sample_images().images]
    return preprocess(pictures, resnet.spec, resnet.device)


@pytest.fixture(scope="module")
def every_call(resnet: LoadedModel, batch: torch.Tensor) -> list[torch.Tensor]:
    """The relu's outputs, call by call, from a plain forward hook."""
    seen: list[torch.Tensor] = []
    handle = resnet.module.get_submodule(RELU).register_forward_hook(
        lambda _m, _i, out: seen.append(out.clone())
    )
    try:
        with torch.inference_mode():
            resnet.module(batch)
    finally:
        handle.remove()
    assert len(seen) == 2
    return seen


def test_catalog_lists_each_call_where_it_runs(resnet: LoadedModel) -> None:
    catalog = resnet.catalog
    first, second, bare = (catalog.get(n) for n in (f"{RELU}#0", f"{RELU}#1", RELU))
    order = {n: catalog.get(f"{BLOCK}.{n}").order for n in ("bn1", "conv2", "bn2")}
    assert order["bn1"] < first.order < order["conv2"] < order["bn2"] < second.order
    assert second.order < catalog.get(BLOCK).order  # the block completes after its relu
    assert (first.call, second.call, bare.call) == (0, 1, None)
    assert bare.calls == 2 and first.calls == second.calls == 1
    assert bare.order == second.order and bare.output_shape == second.output_shape
    assert [lay.name for lay in catalog] == [n for n, _ in resnet.module.named_modules() if n]
    names = [lay.name for lay in catalog.entries()]
    at = names.index(RELU)
    assert names[at : at + 3] == [RELU, f"{RELU}#0", f"{RELU}#1"]
    with pytest.raises(NotFound, match=r"layer1\.0\.relu#2.*Did you mean"):
        catalog.get(f"{RELU}#2")


def test_feature_maps_of_each_call_equal_a_forward_hook(
    resnet: LoadedModel, batch: torch.Tensor, every_call: list[torch.Tensor]
) -> None:
    layers = [f"{RELU}#0", f"{RELU}#1", RELU, BLOCK]
    plan = plan_feature_maps(resnet, layers=layers, channels="all", reduce="none")
    inputs = np.zeros((2, 64, 64, 3), np.uint8)
    result = {
        lay.name: lay.values
        for lay in compute_feature_maps(resnet, batch, plan, inputs=inputs).layers
    }
    np.testing.assert_array_equal(result[f"{RELU}#0"], every_call[0].numpy())
    np.testing.assert_array_equal(result[f"{RELU}#1"], every_call[1].numpy())
    np.testing.assert_array_equal(result[RELU], every_call[1].numpy())  # bare: the last call
    np.testing.assert_array_equal(result[BLOCK], every_call[1].numpy())
    assert not np.array_equal(result[f"{RELU}#0"], result[RELU])
    for module in resnet.module.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_statistics_describe_the_same_call(
    resnet: LoadedModel, batch: torch.Tensor, every_call: list[torch.Tensor]
) -> None:
    stats = compute_stats(resnet, batch, plan_stats(resnet, [RELU, f"{RELU}#0"]))
    by_name = {s.name: s for s in stats}
    for name, expected in ((f"{RELU}#0", every_call[0]), (RELU, every_call[1])):
        assert by_name[name].mean == pytest.approx(float(expected.double().mean()), rel=1e-6)
    assert [s.name for s in stats] == [f"{RELU}#0", RELU]  # forward order


def test_cam_of_the_first_call_equals_pytorch_grad_cam(
    resnet: LoadedModel, batch: torch.Tensor
) -> None:
    """pytorch-grad-cam hooks every call and takes the first; `#0` is that call."""
    target = 3
    inputs = np.zeros((2, 64, 64, 3), np.uint8)
    plan = plan_cam(resnet, method="gradcam", layers=[f"{RELU}#0", RELU], targets=str(target))
    maps = {lay.name: lay.maps for lay in compute_cam(resnet, batch, plan, inputs=inputs).layers}
    module = copy.deepcopy(resnet.module)
    for param in module.parameters():
        param.requires_grad_(True)
    with GradCAM(model=module, target_layers=[module.get_submodule(RELU)]) as cam:
        expected = cam(input_tensor=batch.clone(), targets=[ClassifierOutputTarget(target)] * 2)
    for image in range(2):
        r = np.corrcoef(maps[f"{RELU}#0"][image, 0].ravel(), expected[image].ravel())[0, 1]
        assert r >= 0.99
    last = compute_cam(
        resnet,
        batch,
        plan_cam(resnet, method="gradcam", layers=[f"{RELU}#1"], targets="3"),
        inputs=inputs,
    )
    np.testing.assert_allclose(last.layers[0].maps, maps[RELU], rtol=1e-5, atol=1e-6)
