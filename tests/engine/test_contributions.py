"""Channel contributions against Captum's layer methods, summed over positions (CNNs, and
ViT token layers read as maps)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import timm
import torch
from captum.attr import LayerConductance, LayerGradientXActivation, NeuronGradient
from torch import nn

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.baselines import baseline
from service.engine.attribution.contributions import channel_contributions, plan_contributions
from service.engine.attribution.explain import compute_gradients
from service.engine.attribution.plan import plan_gradients
from service.engine.capture import split_call
from service.samples import digit_samples
from tests.helpers import seeded_resnet
from tests.numerics import assert_float32_close
from tests.source_models import TINY_VIT
from tests.tiny_models import loaded, model_batch, pearson, seeded

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already:UserWarning")


class Case(NamedTuple):
    layer: str
    method: str
    options: dict


CASES = [
    Case("layer2", "grad-x-act", {}),
    Case("layer3.1.conv1", "grad-x-act", {"targets": "3,7"}),
    Case("layer4.1.relu", "grad-x-act", {"targets": "5"}),  # a ReLU that runs twice: its last call
    Case("layer3", "conductance", {"steps": 8, "targets": "3"}),
    Case("layer2.0.bn1", "conductance", {"steps": 5, "baseline": "black", "targets": "1,2"}),
]


@pytest.fixture(scope="module")
def small_resnet() -> LoadedModel:
    """A seeded resnet18 fed 32 x 32, ten classes."""
    return loaded("resnet", seeded_resnet(), (32, 32), 10)


def _captum(
    model: LoadedModel, batch: torch.Tensor, case: Case, target: int | list[int]
) -> torch.Tensor:
    layer = model.module.get_submodule(split_call(case.layer)[0])
    if case.method == "grad-x-act":
        values = LayerGradientXActivation(model.module, layer).attribute(batch, target=target)
    else:
        start = baseline(batch, case.options.get("baseline", "zero"), model.spec)
        values = LayerConductance(model.module, layer).attribute(
            batch, baselines=start, target=target, n_steps=case.options["steps"]
        )
    return values.sum(dim=(2, 3)).detach()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method}-{c.layer}")
def test_resnet_equals_captum(small_resnet: LoadedModel, case: Case) -> None:
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plan = plan_contributions(small_resnet, layer=case.layer, method=case.method, **case.options)
    target, values = channel_contributions(small_resnet, batch, plan)
    assert values.shape == (2, target.count, small_resnet.catalog.get(case.layer).spatial_shape[0])
    for slot in range(target.count):
        classes = target.classes[:, slot].tolist()
        assert_float32_close(values[:, slot], _captum(small_resnet, batch, case, classes))
    assert not any(p.grad is not None for p in small_resnet.module.parameters())
    assert not small_resnet.module._forward_hooks


@pytest.mark.parametrize("method", ["grad-x-act", "conductance"])
def test_digits_equal_captum(digits: LoadedModel, method: str) -> None:
    images = list(digit_samples(4).values())
    batch = model_batch(digits, images)
    plan = plan_contributions(digits, layer="relu2", method=method, steps=16)
    target, values = channel_contributions(digits, batch, plan)
    top1 = target.classes[:, 0]
    case = Case("relu2", method, {"steps": 16})
    for image in range(batch.shape[0]):
        ours = values[image, 0]
        theirs = _captum(digits, batch[image : image + 1], case, int(top1[image]))[0]
        assert_float32_close(ours, theirs)
        assert pearson(ours, theirs) >= 0.999


class _TupleOut(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pair = _TupleOut()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.pair(self.conv(x))
        return self.fc(x.mean(dim=(2, 3)))


def test_layer_without_channels_names_the_layers_with_them() -> None:
    model = loaded("pair", _Net(), (8, 8), 3)
    with pytest.raises(InvalidInput) as raised:
        plan_contributions(model, layer="pair")
    assert raised.value.field == "layer"
    assert "conv" in raised.value.extra["suitable"]
    with pytest.raises(InvalidInput):
        plan_contributions(model, layer="conv", method="saliency")
    assert plan_contributions(model, layer="conv", top=99).top == 4


@pytest.mark.parametrize("method", ["grad-x-act", "conductance"])
def test_vit_token_layer_reads_as_maps(tiny_vit: LoadedModel, method: str) -> None:
    """A ViT block's [N, D] tokens are read as a D-channel map of the patch grid: Captum's
    layer method summed over the patch tokens (the class token is not a position)."""
    layer = "encoder.layers.encoder_layer_0"
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plan = plan_contributions(tiny_vit, layer=layer, method=method, targets="4", steps=6)
    _, values = channel_contributions(tiny_vit, batch, plan)
    module = tiny_vit.module.get_submodule(layer)
    if method == "grad-x-act":
        tokens = LayerGradientXActivation(tiny_vit.module, module).attribute(batch, target=4)
    else:
        tokens = LayerConductance(tiny_vit.module, module).attribute(batch, target=4, n_steps=6)
    assert values.shape == (2, 1, 32)
    assert_float32_close(values[:, 0], tokens[:, 1:].sum(dim=1).detach())


def test_timm_vit_blocks_read_as_maps() -> None:
    """A timm ViT (random weights, 4 x 4 patches after one class token): grad-x-act and a
    unit, against Captum on the patch tokens."""
    module = seeded(lambda: timm.create_model("vit_tiny_patch16_224", num_classes=5, **TINY_VIT))
    model = loaded("tvit", module, (32, 32), 5)
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    block = model.module.get_submodule("blocks.1")
    plan = plan_contributions(model, layer="blocks.1", targets="2")
    _, values = channel_contributions(model, batch, plan)
    tokens = LayerGradientXActivation(model.module, block).attribute(batch, target=2)
    assert_float32_close(values[:, 0], tokens[:, 1:].sum(dim=1).detach())
    unit = plan_gradients(model, method="vanilla", unit="blocks.1:9@3,2")
    ours = compute_gradients(model, batch, unit, inputs=np.zeros((2, 32, 32, 3), np.uint8))
    theirs = NeuronGradient(model.module, block).attribute(batch, (1 + 3 * 4 + 2, 9))
    assert_float32_close(ours.values[:, 0], theirs.detach())


def test_segmentation_region_target_equals_captum(dense_models, photo_images) -> None:
    """target=2 over region=all on a segmentation model: the score is class 2's logits summed
    over the picture, as pytorch-grad-cam's SemanticSegmentationTarget with an all-ones mask."""
    model = dense_models["seg"]
    batch = model_batch(model, list(photo_images.values())[:1])
    layer = "backbone.16"
    plan = plan_contributions(model, layer=layer, targets="2", region="all")
    _, values = channel_contributions(model, batch, plan)

    def region_score(x: torch.Tensor) -> torch.Tensor:
        return model.module(x)["out"][:, 2].sum(dim=(1, 2))[:, None]

    module = model.module.get_submodule(layer)
    theirs = LayerGradientXActivation(region_score, module).attribute(batch, target=0)
    assert_float32_close(values[:, 0], theirs.sum(dim=(2, 3)).detach())


@pytest.mark.parametrize(
    ("unit", "read"),
    [
        ("layer3:5", lambda out: out[:, 5].mean(dim=(1, 2))),
        ("layer3:5@1,0", lambda o: o[:, 5, 1, 0]),
    ],
)
@pytest.mark.parametrize("method", ["grad-x-act", "conductance"])
def test_contributions_to_a_unit_equal_captum(small_resnet, unit, read, method) -> None:
    """Which channels of layer2 drive a unit of layer3: Captum's layer method on the network
    cut after layer3, whose output is the unit."""
    net = small_resnet.module

    def to_unit(x: torch.Tensor) -> torch.Tensor:
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return read(net.layer3(net.layer2(net.layer1(stem))))[:, None]

    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    plan = plan_contributions(small_resnet, layer="layer2", method=method, unit=unit, steps=6)
    _, values = channel_contributions(small_resnet, batch, plan)
    if method == "grad-x-act":
        theirs = LayerGradientXActivation(to_unit, net.layer2).attribute(batch, target=0)
    else:
        theirs = LayerConductance(to_unit, net.layer2).attribute(batch, target=0, n_steps=6)
    assert_float32_close(values[:, 0], theirs.sum(dim=(2, 3)).detach())
    assert not net._forward_hooks and not net._forward_pre_hooks


def test_a_layer_after_the_unit_is_refused(small_resnet) -> None:
    with pytest.raises(InvalidInput) as raised:
        plan_contributions(small_resnet, layer="layer4", unit="layer3:5")
    assert raised.value.field == "layer" and "after the unit" in raised.value.detail


@pytest.mark.parametrize("budget", [1, 5 * 2**20])
def test_conductance_in_parts_of_a_path_is_the_same(small_resnet, budget: int) -> None:
    """A budget too small for one image's path splits it into overlapping parts (budget 1:
    two nodes per pass; 5 MiB: four); the answer is the same as Captum's whole path."""
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    plan = plan_contributions(small_resnet, layer="layer3", method="conductance", steps=7)
    _, values = channel_contributions(small_resnet, batch, plan, budget=budget)
    case = Case("layer3", "conductance", {"steps": 7})
    assert_float32_close(
        values[:, 0], _captum(small_resnet, batch, case, plan_top1(small_resnet, batch))
    )


def plan_top1(model: LoadedModel, batch: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return model.module(batch).argmax(dim=1).tolist()
