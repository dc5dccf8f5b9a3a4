"""The channels-last max pooling of loaded models: bitwise the values of torch's own kernel."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

from model_registry.config import default_specs
from model_registry.fast_paths.pooling import MIN_CHANNELS, MIN_VALUES, speed_up_max_pooling
from model_registry.registry import load_model

CPU = torch.device("cpu")


class PoolLayouts(TorchFunctionMode):
    """Records whether each max pooling call got a channels-last input."""

    def __init__(self) -> None:
        super().__init__()
        self.channels_last: list[bool] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (F.max_pool2d, torch.max_pool2d, F.max_pool2d_with_indices):
            x = args[0]
            self.channels_last.append(
                x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)
            )
        return func(*args, **(kwargs or {}))


def patched(pool: nn.MaxPool2d) -> nn.MaxPool2d:
    fast = copy.deepcopy(pool)
    assert speed_up_max_pooling(fast) == 1
    return fast


def maps(seed: int, shape: tuple[int, ...], *, nan: bool = False) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    x = torch.relu(x)  # zeros tie, as after a ReLU
    if nan:
        x[0, 3, 5:8, 5:8] = float("nan")
        x[-1, -1, -1, -1] = float("nan")
    return x


CONFIGS = [
    (kernel, stride, padding, dilation, ceil)
    for kernel, stride, padding, dilation, ceil in itertools.product(
        (2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2), (False, True)
    )
    if padding <= kernel // 2
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "ceil"), CONFIGS)
def test_values_equal_torch_kernel_bitwise(
    kernel: int, stride: int, padding: int, dilation: int, ceil: bool
) -> None:
    pool = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil)
    fast = patched(pool)
    x = maps(kernel * 100 + stride * 10 + padding, (2, MIN_CHANNELS, 96, 91), nan=True)
    assert x.numel() >= MIN_VALUES
    with torch.inference_mode():
        expected = pool(x)
        with PoolLayouts() as seen:
            got = fast(x)
    assert seen.channels_last == [True]  # the fast path ran
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)


def test_small_maps_graphs_and_indices_keep_torch_kernel() -> None:
    pool = nn.MaxPool2d(3, 2, 1)
    fast = patched(pool)
    small = maps(1, (1, 32, 32, 32))
    few_channels = maps(2, (1, 3, 224, 224))
    big = maps(3, (1, 64, 112, 112))
    with torch.no_grad(), PoolLayouts() as seen:
        fast(small), fast(few_channels), fast(big)
    assert seen.channels_last == [False, False, True]

    leaf = big.clone().requires_grad_()
    reference = big.clone().requires_grad_()
    with PoolLayouts() as seen:
        out = fast(leaf)
    assert seen.channels_last == [False]  # a graph: torch's kernel and its backward
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    out.backward(grad)
    pool(reference).backward(grad)
    assert torch.equal(leaf.grad, reference.grad)

    with_indices = patched(nn.MaxPool2d(2, return_indices=True))
    with torch.no_grad(), PoolLayouts() as seen:
        values, indices = with_indices(big)
    assert seen.channels_last == [False] and indices.dtype == torch.int64


def test_subclasses_keep_their_forward_and_copies_pool_their_own_input() -> None:
    class Halved(nn.MaxPool2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) / 2

    model = nn.Sequential(nn.MaxPool2d(2), Halved(2))
    assert speed_up_max_pooling(model) == 1
    assert speed_up_max_pooling(model) == 0  # once only
    assert "forward" not in vars(model[1])
    twin = copy.deepcopy(model)
    assert twin[0].forward.__self__ is twin[0]
    x = maps(5, (1, 64, 64, 64))
    with torch.no_grad():
        torch.testing.assert_close(twin(x), F.max_pool2d(F.max_pool2d(x, 2), 2) / 2)


def test_loaded_resnet_maps_equal_a_plain_torchvision_forward() -> None:
    """The registry applies it: hooks on the pool and after it see torch's own values."""
    model = load_model(default_specs()[1], CPU)  # resnet18 at 224 x 224
    assert type(model.module.maxpool) is nn.MaxPool2d and "forward" in vars(model.module.maxpool)
    plain = torchvision.models.resnet18(num_classes=model.module.fc.out_features)
    plain.load_state_dict(model.module.state_dict())
    plain.eval()
    x = torch.randn((2, 3, 224, 224), generator=torch.Generator().manual_seed(6))
    seen: dict[str, list[torch.Tensor]] = {"served": [], "plain": []}
    handles = [
        net.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, key=key: seen[key].append(out)
        )
        for key, net in (("served", model.module), ("plain", plain))
        for name in ("maxpool", "layer1")
    ]
    try:
        with torch.inference_mode(), PoolLayouts() as layouts:
            logits = model.module(x)
            expected = plain(x)
    finally:
        for handle in handles:
            handle.remove()
    assert layouts.channels_last == [True, False]
    for ours, theirs in zip(seen["served"], seen["plain"], strict=True):
        assert torch.equal(ours, theirs)
    assert torch.equal(logits, expected)


def test_switched_off_the_registry_keeps_torch_kernel() -> None:
    """`channels_last_pooling=False` (LAYERSCOPE_CHANNELS_LAST_POOLING=false): the plain path."""
    model = load_model(default_specs()[1], CPU, channels_last_pooling=False)
    assert "forward" not in vars(model.module.maxpool)
    x = torch.randn((1, 3, 224, 224), generator=torch.Generator().manual_seed(7))
    with torch.inference_mode(), PoolLayouts() as layouts:
        model.module(x)
    assert layouts.channels_last == [False]
