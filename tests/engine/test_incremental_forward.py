"""Incremental inference equals the model's own forward pass on perturbed copies."""

from __future__ import annotations

import copy
import threading
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import Occlusion
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from model_registry.builtin.digits import DigitsNet
from service.engine.attribution.input_attributions import (
    compute_input_attributions,
    plan_input_attributions,
)
from service.engine.attribution.perturbation.features import occlusion_windows, window_masks
from service.engine.attribution.perturbation.incremental import IncrementalForward, mask_boxes
from tests.helpers import seeded_resnet
from tests.numerics import assert_float32_close
from tests.tiny_models import FunctionalReluNet, loaded, seeded


def _random_statistics(model: nn.Module) -> nn.Module:
    """BatchNorm running statistics that are not the identity, the model in eval mode."""
    generator = torch.Generator().manual_seed(11)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            count = module.num_features
            module.running_mean.copy_(torch.rand(count, generator=generator) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(count, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(count, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(count, generator=generator) * 0.2 - 0.1)
    return model.eval()


class SmallVgg(nn.Module):
    """Plain convolutions with every window the incremental path handles: dilation, groups,
    strides 2 and 3, max pooling with padding and ceil mode, average pooling with padding."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 5, padding=4, dilation=2, groups=4),
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),  # of negative values too
            nn.LeakyReLU(0.1),
            nn.Conv2d(16, 32, 3, stride=3, padding=2),
            nn.ReLU6(),
            nn.AvgPool2d(3, stride=2, padding=1),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.Hardswish(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(32 * 3 * 3, 7)  # every cell counts: no global pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(torch.tanh(self.features(x)) * 2 - 1, 1))


class DataDependent(nn.Module):
    """A branch on the input's values: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            y = y.relu()
        return self.fc(y.mean(dim=(2, 3)))


def _models() -> dict[str, tuple[nn.Module, int, int]]:
    """name -> (model, channels, size)."""
    bottleneck = seeded(lambda: ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10), 3)
    vgg = _random_statistics(seeded(SmallVgg, 4))
    return {
        "resnet18": (seeded_resnet(), 3, 96),
        "bottleneck": (_random_statistics(bottleneck), 3, 64),
        "vgg-like": (vgg, 3, 61),
        "vgg-like-map": (vgg.features, 3, 61),  # its last map: every cell is compared
        "digits": (_random_statistics(seeded(DigitsNet, 5)), 1, 32),
        "relu-modules": (seeded(lambda: FunctionalReluNet("module"), 6).eval(), 3, 40),
    }


MODELS = _models()


class Windows(NamedTuple):
    window: int
    stride: int


WINDOWS = [Windows(16, 8), Windows(7, 3), Windows(9, 5), Windows(5, 5)]


def _perturbed(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """x with each mask's pixels replaced by a constant baseline, one copy per mask."""
    keep = masks[:, None].to(x.dtype)
    return (x * (1 - keep) + 0.3 * keep).contiguous(memory_format=torch.channels_last)


def _windows(size: int, windows: Windows) -> torch.Tensor:
    """Occlusion masks at the corners, the middle of each edge, the centre and a seeded
    sample of the rest: 16 windows (fewer where there are fewer)."""
    corners = occlusion_windows(size, size, windows.window, windows.stride)
    side = int(round(len(corners) ** 0.5))
    grid = [(i, j) for j in (0, side // 2, side - 1) for i in (0, side // 2, side - 1)]
    chosen = {j * side + i for i, j in grid}
    rest = [k for k in range(len(corners)) if k not in chosen]
    picks = np.random.default_rng(0).permutation(rest)[: 16 - len(chosen)].tolist()
    picked = [corners[k] for k in sorted(chosen | set(picks))]
    return window_masks(picked, windows.window, size, size, torch.device("cpu"))


def _picture(channels: int, size: int) -> torch.Tensor:
    return torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("windows", WINDOWS, ids=lambda w: f"{w.window}-{w.stride}")
@pytest.mark.parametrize("max_area", [0.5, 1.0])
@pytest.mark.parametrize("name", list(MODELS))
def test_incremental_outputs_equal_the_forward_pass(
    name: str, max_area: float, windows: Windows
) -> None:
    model, channels, size = MODELS[name]
    x = _picture(channels, size)
    masks = _windows(size, windows)
    forward = IncrementalForward(model, x, max_area=max_area, min_saving=0.0)
    with torch.inference_mode():
        for first in range(0, masks.shape[0], 7):  # batches of 7, then a shorter one
            perturbed = _perturbed(x, masks[first : first + 7])
            ours = forward(perturbed, mask_boxes(masks[first : first + 7]))
            assert_float32_close(ours, model(perturbed))
    assert forward.incremental == -(-masks.shape[0] // 7)


@pytest.mark.parametrize("name", ["resnet18", "vgg-like", "digits"])
def test_irregular_masks_use_their_bounding_boxes(name: str) -> None:
    """Feature ablation's parts (grid blocks, SLIC-like blobs): box = the mask's bounds."""
    model, channels, size = MODELS[name]
    x = _picture(channels, size)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blobs = [
        (rows - 3 * k) ** 2 + (cols - 5 * k - 2) ** 2 * (k % 3 + 1) < 6 * (k + 2) for k in range(6)
    ]
    grid = (rows * 3 // size) * 3 + cols * 3 // size
    masks = torch.stack(blobs + [grid == k for k in (0, 4, 8)])
    forward = IncrementalForward(model, x, min_saving=0.0)
    perturbed = _perturbed(x, masks)
    with torch.inference_mode():
        assert_float32_close(forward(perturbed, mask_boxes(masks)), model(perturbed))
    assert forward.incremental == 1


def test_mask_boxes_are_the_bounds_of_each_mask() -> None:
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:4] = True
    masks[1, 9, 0] = masks[1, 0, 11] = True
    assert mask_boxes(masks) == [(2, 5, 3, 4), (0, 10, 0, 12), (0, 10, 0, 12)]


def test_resnet18_at_224_px_is_incremental_with_the_default_limits() -> None:
    """Occlusion's own case: 16 px windows on resnet18 at 224 px save enough to be used."""
    model = seeded_resnet()
    x = _picture(3, 224)
    masks = _windows(224, Windows(16, 8))[:4]
    forward = IncrementalForward(model, x)
    perturbed = _perturbed(x, masks)
    with torch.inference_mode():
        assert_float32_close(forward(perturbed, mask_boxes(masks)), model(perturbed))
    assert forward.incremental == 1


def test_occlusion_of_resnet18_equals_captum() -> None:
    """The whole method, its passes incremental, against Captum's Occlusion."""
    model = loaded("resnet18-96", seeded_resnet(), (96, 96), 10)
    x = _picture(3, 96)
    given = {"window": 16, "stride": 8, "baseline": "zero", "batch": 16}
    plan = plan_input_attributions(model, method="occlusion", given=given, targets="3")
    blank = np.zeros((1, 96, 96, 3), np.uint8)
    ours = compute_input_attributions(model, x, plan, inputs=blank)
    expected = Occlusion(copy.deepcopy(model.module)).attribute(
        x, sliding_window_shapes=(3, 16, 16), strides=8, target=3, perturbations_per_eval=16
    )
    assert_float32_close(ours.values[:, 0], expected)


def _unsupported() -> list[tuple[str, nn.Module, torch.Tensor]]:
    relu_in_place = seeded(lambda: FunctionalReluNet("functional"), 8).eval()
    linear = seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(48, 3)), 9).eval()
    return [
        ("data-dependent", seeded(DataDependent, 7).eval(), _picture(3, 24)),
        ("in-place on a shared input", relu_in_place, _picture(3, 24)),
        ("not a picture", linear, torch.randn(1, 48)),
    ]


@pytest.mark.parametrize(("why", "model", "x"), _unsupported(), ids=lambda v: str(v)[:30])
def test_models_it_cannot_do_run_whole_with_the_same_values(
    why: str, model: nn.Module, x: torch.Tensor
) -> None:
    forward = IncrementalForward(model, x, min_saving=0.0)
    copies = torch.cat([x, x * 0.5, x + 1])
    boxes = [(0, 1, 0, 1)] * 3
    with torch.inference_mode():
        assert torch.equal(forward(copies, boxes), model(copies))
    assert forward.incremental == 0 and forward.found is None


def test_hooks_and_training_mode_run_the_model_itself() -> None:
    model, channels, size = MODELS["resnet18"]
    x = _picture(channels, size)
    masks = _windows(size, Windows(16, 8))[:3]
    perturbed, boxes = _perturbed(x, masks), mask_boxes(masks)
    seen: list[int] = []
    handle = model.layer1.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
    try:
        forward = IncrementalForward(model, x, min_saving=0.0)
        with torch.inference_mode():
            forward(perturbed, boxes)
    finally:
        handle.remove()
    assert seen == [3] and forward.incremental == 0
    training = copy.deepcopy(model).train()
    assert IncrementalForward(training, x).found is None


def _state(model: nn.Module) -> dict:
    return {
        "values": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "grads": [(p.requires_grad, p.grad) for p in model.parameters()],
        "attributes": [sorted(vars(m)) for m in model.modules()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
    }


def test_the_model_is_left_as_found() -> None:
    model, channels, size = MODELS["resnet18"]
    before = _state(model)
    x = _picture(channels, size)
    masks = _windows(size, Windows(9, 5))
    forward = IncrementalForward(model, x, min_saving=0.0)
    with torch.inference_mode():
        forward(_perturbed(x, masks), mask_boxes(masks))
    after = _state(model)
    assert forward.incremental == 1
    for key, value in before["values"].items():
        assert torch.equal(value, after["values"][key])
    assert [before[k] == after[k] for k in ("modes", "attributes", "hooks")] == [True] * 3
    assert all(grad is None for _, grad in after["grads"])
    assert [r for r, _ in before["grads"]] == [r for r, _ in after["grads"]]


def test_torchvision_vgg11_features_are_incremental() -> None:
    """vgg11's convolution stack (the classifier left out: 100 M parameters)."""
    features = seeded(lambda: torchvision.models.vgg11().features, 10).eval()
    x = _picture(3, 64)
    masks = _windows(64, Windows(7, 3))[:5]
    forward = IncrementalForward(features, x, max_area=1.0, min_saving=0.0)
    perturbed = _perturbed(x, masks)
    with torch.inference_mode():
        assert_float32_close(forward(perturbed, mask_boxes(masks)), features(perturbed))
    assert forward.incremental == 1


class TracedWhileOthersRun(nn.Module):
    """Its forward runs another model in another thread, as a concurrent request would
    while this one is traced (fx patches nn.Module for every thread meanwhile)."""

    def __init__(self, other: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.others = [other]  # not a submodule
        self.seen: list[object] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sample = torch.ones(1, 3, 8, 8)
        thread = threading.Thread(target=lambda: self.seen.append(self.others[0](sample)))
        thread.start()
        thread.join()
        return self.conv(x)


def test_tracing_leaves_other_threads_forward_passes_alone() -> None:
    other = seeded(lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()), 12).eval()
    model = seeded(lambda: TracedWhileOthersRun(other), 13).eval()
    x = _picture(3, 16)
    forward = IncrementalForward(model, x, min_saving=0.0)
    assert forward.found is not None
    (during_trace,) = model.seen
    with torch.inference_mode():
        assert torch.equal(during_trace, other(torch.ones(1, 3, 8, 8)))
