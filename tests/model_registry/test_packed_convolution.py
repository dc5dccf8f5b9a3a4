"""Packed-weight convolutions of loaded models: torch's values to float rounding inside
`packed_weights()`, torch's own values outside it.

A packed layer's first call for each input shape checks the packed kernel against torch's
and reorders the weights; the tests call twice to see both calls.
"""

from __future__ import annotations

import copy
import logging
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from model_registry.config import default_specs
from model_registry.fast_paths import packed_convolution
from model_registry.fast_paths.packed_check import check_whole_model
from model_registry.fast_paths.packed_convolution import (
    MAX_REORDERS,
    packed_layers,
    packed_weights,
    speed_up_convolutions,
)
from model_registry.registry import load_model

CPU = torch.device("cpu")

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN"
)


@pytest.fixture(autouse=True)
def switched_on() -> object:
    """Every test runs inside `packed_weights()`, as a CAM's passes do."""
    with packed_weights():
        yield


class Conv(NamedTuple):
    in_channels: int
    out_channels: int
    kernel: int | tuple[int, int]
    stride: int = 1
    padding: int | tuple[int, int] = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = True
    batch: int = 1
    size: tuple[int, int] = (29, 31)


CONVS = [
    Conv(3, 16, 7, stride=2, padding=3, bias=False),  # a stem
    Conv(16, 32, 3, padding=1),
    Conv(16, 32, 3, stride=2, padding=1, batch=3),
    Conv(32, 64, 1, bias=False, batch=2),
    Conv(32, 32, 3, padding=1, groups=32),  # depthwise
    Conv(32, 64, 3, padding=1, groups=4, batch=4),
    Conv(16, 16, 3, padding=2, dilation=2),
    Conv(16, 24, (1, 3), padding=(0, 1)),
    Conv(8, 8, 5, stride=3),
]


def packed(layer: nn.Module) -> nn.Module:
    fast = copy.deepcopy(layer)
    assert speed_up_convolutions(fast) == sum(type(m) is nn.Conv2d for m in layer.modules())
    return fast


def seeded(seed: int, *args: object, **kwargs: object) -> tuple[nn.Module, nn.Module]:
    """A seeded `nn.Conv2d(*args, **kwargs)` in eval mode, and its packed copy."""
    torch.manual_seed(seed)
    layer = nn.Conv2d(*args, **kwargs).eval()
    return layer, packed(layer)


def state(layer: nn.Conv2d) -> tuple[int, bool, int]:
    packs = layer._layerscope_packs
    return len(packs.by_shape), packs.off, packs.reorders


def picture(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def close(got: torch.Tensor, expected: torch.Tensor, *, rtol: float = 1e-5) -> None:
    """Equal to float rounding: within `rtol` of the largest magnitude."""
    atol = rtol * float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("conv", CONVS, ids=str)
def test_values_match_torch_kernel(conv: Conv) -> None:
    torch.manual_seed(sum(conv.size) + conv.in_channels)
    layer = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias,
    ).eval()
    fast = packed(layer)
    x = picture(1, (conv.batch, conv.in_channels, *conv.size))
    with torch.inference_mode():
        expected = layer(x)
        first = fast(x)
        second = fast(x)
        with packed_weights(False):
            outside = fast(x)
    assert state(fast) == (1, False, 1)  # the check passed and the weights were kept
    assert torch.equal(first, second)  # the packed kernel from the first call on
    assert second.shape == expected.shape
    close(second, expected)
    assert torch.equal(outside, expected)  # outside the switch: torch's kernel, exactly


def test_a_channels_last_output_feeds_packed_and_torch_layers_alike() -> None:
    """A packed layer answers channels-last; the next packed layer takes it as is, a layer
    that keeps torch's kernel (a subclass here) gets it channels-first, as torch runs fastest."""

    class Doubled(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()
    ).eval()
    tail = Doubled(16, 8, 3, padding=1).eval()
    fast = packed(model)
    x = picture(3, (1, 3, 40, 40))
    with torch.inference_mode():
        expected = tail(model(x))
        fast(x)
        inner = fast(x)
        got = tail(inner)
        reference = model(x)
    assert inner.is_contiguous(memory_format=torch.channels_last)
    close(inner, reference)
    close(got, expected)
    assert [state(layer)[:2] for layer in packed_layers(fast)] == [(1, False), (1, False)]


def test_one_picture_and_batches_keep_one_copy_each() -> None:
    layer, fast = seeded(4, 16, 32, 3, padding=1)
    with torch.no_grad():  # no graph either way: no_grad takes the packed path too
        for batch in (1, 1, 3, 5, 2, 1, 4):
            x = picture(batch, (batch, 16, 20, 20))
            close(fast(x), layer(x))
    assert sorted(k[0] for k in fast._layerscope_packs.by_shape) == [1, 2]
    assert state(fast) == (2, False, 2)


def test_passes_that_record_a_graph_keep_torch_kernel_and_its_backward() -> None:
    layer, fast = seeded(5, 8, 16, 3, padding=1)
    x = picture(6, (2, 8, 24, 24))
    leaf, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    for _ in range(2):
        out = fast(leaf)
    grad = picture(7, tuple(out.shape))
    out.backward(grad)
    layer(reference).backward(grad)
    assert torch.equal(out, layer(x)) and out.grad_fn is not None
    assert torch.equal(leaf.grad, reference.grad)
    assert torch.equal(fast.weight.grad, layer.weight.grad)
    assert state(fast) == (0, False, 0)  # never packed


def test_weights_changed_in_place_are_reordered_again() -> None:
    layer, fast = seeded(8, 8, 16, 3, padding=1)
    x = picture(9, (1, 8, 24, 24))
    with torch.inference_mode():
        fast(x), fast(x)
    with torch.no_grad():  # a sanity check's randomization, or load_state_dict
        fast.weight.mul_(-2.0)
        layer.weight.mul_(-2.0)
    with torch.inference_mode():
        for _ in range(2):
            close(fast(x), layer(x))
    assert state(fast) == (1, False, 2)


def test_a_layer_fed_ever_new_shapes_goes_back_to_torch_for_good() -> None:
    layer, fast = seeded(10, 8, 8, 3, padding=1)
    with torch.inference_mode():
        for side in range(16, 16 + MAX_REORDERS):
            x = picture(side, (1, 8, side, side))
            close(fast(x), layer(x))
        assert state(fast) == (MAX_REORDERS, False, MAX_REORDERS)
        x = picture(1, (1, 8, 15, 15))  # one shape too many
        assert torch.equal(fast(x), layer(x))
        assert state(fast) == (0, True, MAX_REORDERS)
        assert torch.equal(fast(x), layer(x))  # and so it stays


def test_a_kernel_that_disagrees_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    convolve = packed_convolution._convolve
    monkeypatch.setattr(packed_convolution, "_convolve", lambda *args: convolve(*args) * (1 + 1e-3))
    layer, fast = seeded(11, 8, 16, 3, padding=1)
    x = picture(12, (1, 8, 24, 24))
    net = nn.Sequential(nn.Identity(), copy.deepcopy(layer))
    assert speed_up_convolutions(net, model="tiny-net") == 1
    with torch.inference_mode(), caplog.at_level(logging.WARNING, logger="layerscope.models"):
        for _ in range(3):
            assert torch.equal(fast(x), layer(x))
            assert torch.equal(net(x), layer(x))
    assert state(fast) == (0, True, 1)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # once per layer, not per call
    assert "model 'tiny-net', layer '1': its output differs from torch's kernel's" in warnings[1]


def test_other_layers_and_inputs_keep_torch_kernel() -> None:
    class Same(nn.Conv2d):
        pass

    model = nn.Sequential(
        Same(4, 4, 3),
        nn.Conv2d(4, 4, 3, padding="same"),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.Conv1d(4, 4, 3),
    )
    assert speed_up_convolutions(model) == 0
    assert packed_layers(model) == []

    layer, fast = seeded(13, 4, 8, 3)
    assert speed_up_convolutions(fast) == 0  # once only
    with torch.inference_mode():
        wide = picture(14, (1, 4, 16, 16)).double()
        assert torch.equal(fast.double()(wide), layer.double()(wide))
        unbatched = picture(15, (4, 16, 16)).double()
        assert torch.equal(fast(unbatched), layer(unbatched))
        strided = picture(16, (1, 4, 16, 32)).double()[..., ::2]
        assert torch.equal(fast(strided), layer(strided))
    assert state(fast) == (0, False, 0)


def test_a_copy_starts_without_reordered_weights_and_runs_its_own() -> None:
    layer, fast = seeded(17, 8, 8, 3, padding=1)
    x = picture(18, (1, 8, 20, 20))
    with torch.inference_mode():
        fast(x)
    twin = copy.deepcopy(fast)
    assert twin.forward.__self__ is twin
    assert state(twin) == (0, False, 0) and state(fast) == (1, False, 1)
    with torch.no_grad():
        twin.weight.zero_()
    with torch.inference_mode():
        for _ in range(2):
            assert torch.equal(twin(x), F.conv2d(x, twin.weight, twin.bias, padding=1))
            close(fast(x), layer(x))


class Flattened(nn.Module):
    """A user's model in the old style: `.view` on a convolution's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 12 * 12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


def test_whole_model_check_keeps_packing_only_where_the_model_takes_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    torch.manual_seed(19)
    example = picture(20, (1, 3, 12, 12))
    old_style = Flattened().eval()
    with torch.inference_mode():
        expected = old_style(example)
    speed_up_convolutions(old_style)
    with caplog.at_level(logging.WARNING, logger="layerscope.models"):
        assert check_whole_model(old_style, example, model="old-style") is False
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "model 'old-style', layer 'conv': the forward pass failed" in warning
    assert packed_layers(old_style) == [] and "forward" not in vars(old_style.conv)
    with torch.inference_mode():
        for _ in range(2):
            assert torch.equal(old_style(example), expected)

    resnet = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    speed_up_convolutions(resnet)
    assert check_whole_model(resnet, picture(21, (1, 3, 64, 64))) is True
    assert all(state(layer) == (1, False, 1) for layer in packed_layers(resnet))


class ReadsMemory(nn.Module):
    """Reads the second convolution's output as channels-first memory: wrong values, no error."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(self.act(self.stem(x)))
        return self.head(y.as_strided(y.shape, (y[0].numel(), y[0, 0].numel(), y.shape[3], 1)))


def test_a_model_whose_outputs_differ_names_the_layer(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(23)
    model = ReadsMemory().eval()
    speed_up_convolutions(model, model="reads-memory")
    with caplog.at_level(logging.WARNING, logger="layerscope.models"):
        assert check_whole_model(model, picture(24, (1, 3, 10, 10)), model="reads-memory") is False
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("packed convolutions off for model 'reads-memory', layer 'body'")
    assert "its outputs differ" in warning and "departs at 'head'" in warning
    assert packed_layers(model) == []


def test_loaded_resnet_matches_torchvision_to_float_rounding() -> None:
    """The registry packs a loaded model's layers; hooks see torch's values to rounding."""
    model = load_model(default_specs()[1], CPU)  # resnet18 at 224 x 224
    assert len(packed_layers(model.module)) == 20
    plain = torchvision.models.resnet18(num_classes=model.module.fc.out_features)
    plain.load_state_dict(model.module.state_dict())
    plain.eval()
    seen: dict[str, torch.Tensor] = {}
    handles = [
        net.get_submodule("layer3").register_forward_hook(
            lambda _m, _i, out, key=key: seen.__setitem__(key, out.clone())
        )
        for key, net in (("served", model.module), ("plain", plain))
    ]
    x = picture(22, (1, 3, 224, 224))
    try:
        with torch.inference_mode():
            logits = model.module(x)  # weights reordered at load for this shape
            expected = plain(x)
    finally:
        for handle in handles:
            handle.remove()
    assert all(state(layer) == (1, False, 1) for layer in packed_layers(model.module))
    close(seen["served"], seen["plain"])
    close(logits, expected)
    with torch.inference_mode(), packed_weights(False):
        assert torch.equal(model.module(x), expected)

    exact = load_model(default_specs()[1], CPU, pack_convolutions=False)
    assert packed_layers(exact.module) == []
    with torch.inference_mode():
        assert torch.equal(exact.module(x), expected)
