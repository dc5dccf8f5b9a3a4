"""Hooked activations equal a direct computation; hooks belong to one thread and always go away."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from service.engine.capture import capture, hooked
from tests.helpers import seeded_resnet


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return seeded_resnet(3)


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _stem(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


def test_captured_layers_equal_direct_computation(resnet: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = capture(resnet, x, {"conv1": 1, "layer1": 1, "layer2.0.conv1": 1})
    with torch.no_grad():
        conv1 = resnet.conv1(x)
        layer1 = resnet.layer1(_stem(resnet, x))
        block = resnet.layer2[0]
        expected = block.conv1(layer1)
    torch.testing.assert_close(out["conv1"], conv1, rtol=0, atol=0)
    torch.testing.assert_close(out["layer1"], layer1, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out["layer2.0.conv1"], expected, rtol=1e-6, atol=1e-6)
    assert _no_hooks(resnet)


def test_forward_stops_after_the_deepest_requested_layer(resnet: nn.Module) -> None:
    ran: list[str] = []
    handles = [
        resnet.get_submodule(n).register_forward_hook(lambda *_a, n=n: ran.append(n))
        for n in ("layer2", "layer3", "fc")
    ]
    try:
        capture(resnet, torch.randn(1, 3, 64, 64), {"layer1": 1, "layer2": 1})
        assert ran == ["layer2"]
        ran.clear()
        capture(resnet, torch.randn(1, 3, 64, 64), {"layer1": 1}, stop_early=False)
        assert ran == ["layer2", "layer3", "fc"]
    finally:
        for h in handles:
            h.remove()


def test_reused_module_keeps_its_last_call(resnet: nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64)
    seen: list[torch.Tensor] = []
    handle = resnet.layer1[0].relu.register_forward_hook(lambda _m, _i, o: seen.append(o.clone()))
    try:
        with torch.no_grad():
            resnet(x)
    finally:
        handle.remove()
    out = capture(resnet, x, {"layer1.0.relu": 2})
    torch.testing.assert_close(out["layer1.0.relu"], seen[-1])


def test_hooks_are_removed_after_a_failing_forward(resnet: nn.Module) -> None:
    with pytest.raises(RuntimeError):
        capture(resnet, torch.randn(1, 5, 64, 64), {"layer1": 1})  # wrong channel count
    assert _no_hooks(resnet)
    with pytest.raises(ZeroDivisionError), hooked(resnet, {"conv1": lambda *_: None}):
        assert resnet.conv1._forward_hooks
        raise ZeroDivisionError
    assert _no_hooks(resnet)


def test_concurrent_threads_never_see_each_others_activations(resnet: nn.Module) -> None:
    """Barrier-synchronised threads capture different layers of different inputs on one model."""
    jobs = [
        (torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(i)), layer)
        for i, layer in enumerate(["layer1", "layer2", "layer3", "conv1"] * 2)
    ]
    expected = [capture(resnet, x, {layer: 1})[layer] for x, layer in jobs]
    barrier = threading.Barrier(len(jobs))
    results: list[torch.Tensor | None] = [None] * len(jobs)
    full: list[torch.Tensor | None] = [None] * len(jobs)

    def work(i: int) -> None:
        x, layer = jobs[i]
        barrier.wait()
        for _ in range(3):
            results[i] = capture(resnet, x, {layer: 1})[layer]
            with torch.no_grad():
                full[i] = resnet(x)  # a plain forward beside others' hooks is never cut short

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (_x, _layer) in enumerate(jobs):
        torch.testing.assert_close(results[i], expected[i])
        assert full[i] is not None and full[i].shape == (1, 10)
    assert _no_hooks(resnet)


def test_in_place_ops_after_a_layer_do_not_rewrite_its_capture(resnet: nn.Module) -> None:
    """resnet's ReLU(inplace=True) follows bn1: bn1 keeps its negative values either way."""
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    alone = capture(resnet, x, {"bn1": 1})["bn1"]
    with_later = capture(resnet, x, {"bn1": 1, "layer1": 1})["bn1"]
    with torch.no_grad():
        expected = resnet.bn1(resnet.conv1(x))
    assert (expected < 0).any()
    torch.testing.assert_close(alone, expected)
    torch.testing.assert_close(with_later, expected)


def test_captures_equal_torchvision_feature_extraction(resnet: nn.Module) -> None:
    """torchvision's own create_feature_extractor gives the same tensors: a BatchNorm inside a
    block, blocks and the pooling. (Not for `bn1` when deeper layers are asked for too: the
    stem's in-place ReLU then overwrites FX's tensor, while layerscope keeps bn1's output.)"""
    from torchvision.models.feature_extraction import create_feature_extractor

    layers = {"layer1.0.bn2": 1, "layer2": 1, "layer3.1": 1, "avgpool": 1}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(11))
    ours = capture(resnet, x, layers)
    extractor = create_feature_extractor(resnet, {name: name for name in layers})
    with torch.no_grad():
        theirs = extractor(x)
    for name in layers:
        torch.testing.assert_close(ours[name], theirs[name])
