"""`lrp` against zennit's own `Gradient` attributor, same composite and canonizers."""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from zennit.attribution import Gradient
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.input_attributions import (
    compute_input_attributions,
    plan_input_attributions,
)
from service.engine.attribution.lrp import input_bounds
from tests.numerics import assert_float32_close
from tests.tiny_models import loaded, pearson, seeded

CLASSES = 10


def _with_running_stats(module: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms, so merging them matters."""
    generator = torch.Generator().manual_seed(7)
    for child in module.modules():
        if isinstance(child, nn.BatchNorm2d):
            size = child.num_features
            child.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
            child.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            child.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            child.bias.data.copy_(torch.randn(size, generator=generator) * 0.1)
    return module


def _tiny_vgg() -> nn.Module:
    """VGG's layout (conv-bn-relu stacks, max pools, a linear classifier with dropout)."""
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Sequential(nn.Linear(512, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, CLASSES)),
    )


@pytest.fixture(scope="module")
def nets() -> dict[str, LoadedModel]:
    resnet = seeded(lambda: _with_running_stats(resnet18(num_classes=CLASSES)), seed=2)
    vgg = seeded(lambda: _with_running_stats(_tiny_vgg()), seed=3)
    return {
        "resnet18": loaded("lrp-resnet18", resnet, (32, 32), CLASSES),
        "vgg": loaded("lrp-vgg", vgg, (32, 32), CLASSES),
    }


class Case(NamedTuple):
    net: str
    rule: str


CANONIZERS = {"resnet18": ResNetCanonizer, "vgg": VGGCanonizer}
CASES = [
    Case(net, rule)
    for net in CANONIZERS
    for rule in ("epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1", "epsilon-plus")
]


def _zennit(model: LoadedModel, case: Case, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """zennit's relevance of `x` (one image) for each of `targets`, one row per target."""
    canonizers = [CANONIZERS[case.net]()]
    low, high = input_bounds(model.spec.mean, model.spec.std, 3)
    composite = {
        "epsilon-plus-flat": lambda: EpsilonPlusFlat(canonizers=canonizers),
        "epsilon-gamma-box": lambda: EpsilonGammaBox(low=low, high=high, canonizers=canonizers),
        "epsilon-alpha2-beta1": lambda: EpsilonAlpha2Beta1(canonizers=canonizers),
        "epsilon-plus": lambda: EpsilonPlus(canonizers=canonizers),
    }[case.rule]()
    rows = x.expand(len(targets), *x.shape[1:])
    with Gradient(model=copy.deepcopy(model.module), composite=composite) as attributor:
        _, relevance = attributor(rows, torch.eye(CLASSES)[targets])
    return relevance.detach()


def _ours(model: LoadedModel, x: torch.Tensor, targets: str, **given) -> object:
    plan = plan_input_attributions(model, method="lrp", given=given, targets=targets)
    blank = np.zeros((x.shape[0], *model.spec.input_size, 3), np.uint8)
    return compute_input_attributions(model, x, plan, inputs=blank)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.net}-{c.rule}")
def test_lrp_equals_zennit_gradient_with_the_same_composite(
    case: Case, nets: dict[str, LoadedModel]
) -> None:
    model = nets[case.net]
    x = torch.randn(1, 3, *model.spec.input_size, generator=torch.Generator().manual_seed(11))
    ours = _ours(model, x, "2,7", rule=case.rule)
    assert ours.values.shape == (1, 2, 3, *model.spec.input_size)
    expected = _zennit(model, case, x, [2, 7])
    for slot in range(2):
        assert pearson(ours.values[0, slot], expected[slot]) >= 0.99
        assert_float32_close(ours.values[0, slot], expected[slot])


def test_lrp_leaves_the_shared_model_as_found(nets: dict[str, LoadedModel]) -> None:
    module = nets["resnet18"].module
    state = {k: v.clone() for k, v in module.state_dict().items()}
    forwards = {name: type(m).forward for name, m in module.named_modules()}
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    _ours(nets["resnet18"], x, "1", rule="epsilon-gamma-box")
    for child in module.modules():
        assert not child._forward_hooks and not child._forward_pre_hooks
        assert not child._backward_hooks and "forward" not in vars(child)
        assert not hasattr(child, "canonizer_sum")
    assert {name: type(m).forward for name, m in module.named_modules()} == forwards
    assert all(p.grad is None for p in module.parameters()) and module.training is False
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_lrp_on_the_digits_model_conserves_the_epsilon_relevance(digits: LoadedModel) -> None:
    """epsilon-plus (z+ rule on convolutions, epsilon on the last layer) keeps the positive
    relevance of the target logit: the map sums to about the logit when it is positive."""
    x = torch.rand(1, 1, *digits.spec.input_size, generator=torch.Generator().manual_seed(3))
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        logits = digits.module(x)[0]
    target = int(logits.argmax())
    ours = _ours(digits, x, str(target), rule="epsilon-plus")
    assert ours.values.shape == (1, 1, 1, *digits.spec.input_size)
    assert np.isfinite(np.asarray(ours.values)).all()
    assert float(np.asarray(ours.values).sum()) > 0


def test_lrp_refuses_a_vit_whose_attention_has_no_rule(tiny_vit: LoadedModel) -> None:
    with pytest.raises(InvalidInput, match="lrp has no rule for layer") as caught:
        plan_input_attributions(tiny_vit, method="lrp", given={}, targets="1")
    assert caught.value.field == "method"


def test_lrp_refuses_an_unknown_rule(nets: dict[str, LoadedModel]) -> None:
    with pytest.raises(InvalidInput, match="rule") as caught:
        plan_input_attributions(nets["vgg"], method="lrp", given={"rule": "z-plus"}, targets="1")
    assert caught.value.field == "rule"
