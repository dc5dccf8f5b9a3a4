"""Receptive fields against hand-computed stacks: a Sequential with known kernels, strides,
paddings and dilations, torchvision resnet18's layer1 and layer2, and a ViT's token grid."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from model_registry.registry import LoadedModel
from service.engine.exemplars.receptive_field import receptive_field
from tests.tiny_models import loaded, seeded


def affine(size: int, positions: int, *, start: int, span: int, jump: int) -> np.ndarray:
    """[first, last] input pixel of each position from the closed form (Araujo et al. 2019):
    position i sees start + i * jump .. start + i * jump + span - 1, clipped to the input."""
    first = start + jump * np.arange(positions)
    return np.stack([first.clip(0, size - 1), (first + span - 1).clip(0, size - 1)], axis=1)


@pytest.fixture(scope="module")
def stack() -> LoadedModel:
    module = seeded(
        lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=1, padding=1),  # span 3, jump 1, start -1
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, stride=2, padding=0, dilation=2),  # kernel 5: span 7, jump 2
            nn.MaxPool2d(2),  # span 7 + 1 * 2 = 9, jump 4
            nn.Conv2d(4, 4, 3, stride=1, padding=2, dilation=2),  # span 9 + 4 * 4 = 25, start -9
            nn.BatchNorm2d(4),
            nn.AdaptiveAvgPool2d(1),
        )
    )
    return loaded("stack", module, (32, 32), 4)


@pytest.mark.parametrize(
    ("layer", "positions", "start", "span", "jump"),
    [("0", 32, -1, 3, 1), ("2", 14, -1, 7, 2), ("3", 7, -1, 9, 4), ("5", 7, -9, 25, 4)],
)
def test_a_sequential_stack_matches_the_closed_form(
    stack: LoadedModel, layer: str, positions: int, start: int, span: int, jump: int
) -> None:
    field = receptive_field(stack, layer)
    expected = affine(32, positions, start=start, span=span, jump=jump)
    assert field.derived
    np.testing.assert_array_equal(field.rows, expected)
    np.testing.assert_array_equal(field.cols, expected)


def test_a_box_is_x0_y0_x1_y1_with_the_ends_exclusive(stack: LoadedModel) -> None:
    field = receptive_field(stack, "5")  # position i sees 4i - 9 .. 4i + 15
    assert field.box(0, 6) == (15, 0, 32, 16)
    assert field.box(3, 2) == (0, 3, 24, 28)


def test_the_adaptive_pool_sees_the_whole_input(stack: LoadedModel) -> None:
    field = receptive_field(stack, "6")
    assert field.box(0, 0) == (0, 0, 32, 32)


def test_resnet18_layer1_and_layer2_by_hand(resnet: LoadedModel) -> None:
    """conv1 7x7/2 pad 3: span 7, jump 2, start -3; maxpool 3x3/2 pad 1: span 11, jump 4,
    start -5; layer1's four 3x3 convolutions add 2 * 4 each: span 43, start -21. layer2:
    3x3/2 pad 1 (span 51, jump 8, start -25), then three 3x3: span 99, start -49; its 1x1
    downsample's shorter field lies inside."""
    layer1 = receptive_field(resnet, "layer1")
    np.testing.assert_array_equal(layer1.rows, affine(64, 16, start=-21, span=43, jump=4))
    np.testing.assert_array_equal(layer1.cols, layer1.rows)
    assert layer1.box(5, 2) == (0, 0, 30, 42)
    first_block = receptive_field(resnet, "layer1.0")  # two convolutions: span 27, start -13
    np.testing.assert_array_equal(first_block.rows, affine(64, 16, start=-13, span=27, jump=4))
    inner = receptive_field(resnet, "layer1.0.relu#0")  # after conv1 of the block: span 19
    np.testing.assert_array_equal(inner.rows, affine(64, 16, start=-9, span=19, jump=4))
    layer2 = receptive_field(resnet, "layer2")
    np.testing.assert_array_equal(layer2.rows, affine(64, 8, start=-49, span=99, jump=8))
    assert not any(m._forward_hooks for m in resnet.module.modules())
    assert not resnet.module.training


def test_vit_tokens_stand_in_as_their_patch(tiny_vit: LoadedModel) -> None:
    """The patch embedding (8x8, stride 8) is followed; an encoder block's tokens are not
    (reshaped, and attention sees every patch): each stands for its patch cell."""
    patches = receptive_field(tiny_vit, "conv_proj")
    assert patches.derived
    np.testing.assert_array_equal(patches.rows, affine(32, 4, start=0, span=8, jump=8))
    tokens = receptive_field(tiny_vit, "encoder.layers.encoder_layer_1")
    assert not tokens.derived
    np.testing.assert_array_equal(tokens.rows, patches.rows)
    assert tokens.box(1, 3) == (24, 8, 32, 16)
