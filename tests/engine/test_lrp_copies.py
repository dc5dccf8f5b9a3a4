"""The canonized copies LRP keeps per model: reused, never shared, rebuilt, bounded, dropped."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from model_registry.registry import LoadedModel
from service.engine.attribution import lrp as lrp_module
from service.engine.attribution.canonized import CanonizedCopies
from service.engine.attribution.input_attributions import (
    compute_input_attributions,
    plan_input_attributions,
)
from service.engine.attribution.lrp import canonize
from tests.tiny_models import loaded, seeded

CLASSES = 10
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def resnet() -> LoadedModel:
    return loaded(
        "lrp-copies-resnet18", seeded(lambda: resnet18(num_classes=CLASSES), 4), (32, 32), CLASSES
    )


def _net(seed: int) -> nn.Module:
    return seeded(
        lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 30 * 30, 3),
        ).eval(),
        seed,
    )


def _lrp(model: LoadedModel, x: torch.Tensor) -> np.ndarray:
    plan = plan_input_attributions(model, method="lrp", given={}, targets="3")
    blank = np.zeros((1, *model.spec.input_size, 3), np.uint8)
    return np.asarray(compute_input_attributions(model, x, plan, inputs=blank).values)


def test_requests_reuse_one_canonized_copy_and_leave_the_model_as_found(
    resnet: LoadedModel,
) -> None:
    module = resnet.module
    state = {k: v.clone() for k, v in module.state_dict().items()}
    names = [name for name, _ in module.named_modules()]
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    first = _lrp(resnet, x)
    with lrp_module.COPIES.lend(module, CPU, canonize) as kept:
        pass
    second = _lrp(resnet, x)
    with lrp_module.COPIES.lend(module, CPU, canonize) as again:
        assert again is kept  # the same copy served both requests and this lend
    np.testing.assert_array_equal(first, second)  # cached or not, the same answer
    assert hasattr(kept.layer1[0], "canonizer_sum")  # canonized (ResNet skip sums)
    assert not any(child._forward_hooks or child._backward_hooks for child in kept.modules())
    leaves = [child for child in kept.modules() if next(child.children(), None) is None]
    assert not any("forward" in vars(child) for child in leaves)  # rules' forwards restored
    assert [name for name, _ in module.named_modules()] == names
    for child in module.modules():
        assert not child._forward_hooks and not child._forward_pre_hooks
        assert not child._backward_hooks and not hasattr(child, "canonizer_sum")
    assert all(p.grad is None for p in module.parameters()) and module.training is False
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_two_models_and_two_devices_never_share_a_copy() -> None:
    copies = CanonizedCopies()
    one, two = _net(1), _net(2)
    with copies.lend(one, CPU, canonize) as a, copies.lend(two, CPU, canonize) as b:
        assert a is not b
        assert torch.equal(a[0].weight, canonized_weight(one))
        assert torch.equal(b[0].weight, canonized_weight(two))
    with copies.lend(one, torch.device("meta"), canonize) as c:
        assert c is not a
    assert len(copies) == 3


def canonized_weight(module: nn.Module) -> torch.Tensor:
    reference = _net(0)
    reference.load_state_dict(module.state_dict())
    canonize(reference)
    return reference[0].weight


def test_a_copy_in_use_is_not_lent_twice() -> None:
    copies, net = CanonizedCopies(), _net(1)
    with copies.lend(net, CPU, canonize) as outer, copies.lend(net, CPU, canonize) as inner:
        assert inner is not outer
    with copies.lend(net, CPU, canonize) as later:
        assert later is outer
    assert len(copies) == 1


def test_a_model_changed_in_place_gets_a_new_copy() -> None:
    copies, net = CanonizedCopies(), _net(1)
    with copies.lend(net, CPU, canonize) as before:
        pass
    with torch.no_grad():
        net[0].weight.mul_(2)
    with copies.lend(net, CPU, canonize) as after:
        assert after is not before
        assert torch.equal(after[0].weight, canonized_weight(net))


def test_copies_are_bounded_and_dropped_with_their_model() -> None:
    copies = CanonizedCopies(limit=2)
    nets = [_net(seed) for seed in range(3)]
    for net in nets:
        with copies.lend(net, CPU, canonize):
            pass
    assert len(copies) == 2
    with copies.lend(nets[2], CPU, canonize) as newest:
        pass
    del nets, net
    gc.collect()
    assert len(copies) == 0
    assert newest[0].weight.shape == (4, 3, 3, 3)


def test_a_model_with_hooks_gets_a_copy_that_is_not_kept() -> None:
    copies, net = CanonizedCopies(), _net(1)
    handle = net[2].register_forward_hook(lambda *_: None)
    try:
        with copies.lend(net, CPU, canonize) as local:
            assert local[2]._forward_hooks  # copied along, as a deep copy does
    finally:
        handle.remove()
    assert len(copies) == 0
    with copies.lend(net, CPU, canonize) as kept:
        assert not kept[2]._forward_hooks
    assert len(copies) == 1
