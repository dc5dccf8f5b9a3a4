"""How a layer's output is shown as maps: [C, H, W] from CNNs, ViTs and Swins alike.

CNN layers give [B, C, H, W]. Vision transformers give token sequences [B, N, D] whose
first tokens are class/distillation/register tokens and whose others are the patch grid
row by row; Swin stages give channels-last [B, H, W, C]. `map_layout` decides, from the
output shape and the model's input size alone, which of these a shape is, and `to_maps`
turns a tensor of that layout into [B, C, H, W] (a view: no copy, gradients flow).

Rules, in order (a grid is (h, w) = the input size divided by one integer stride, each
side rounded up or down):
- [C] is a vector, shown as [C, 1, 1].
- [A, B, C] is channels-first [C=A, H=B, W=C] unless (B, C) is not a grid and (A, B) is:
  then it is channels-last (Swin). CNN outputs therefore keep their channels-first reading.
- [N, D] is a token sequence when dropping the first k tokens (k = 0..8, smallest first)
  leaves a grid: ViT-B/16 at 224 x 224 has N = 197 = 1 + 14 * 14.
- Anything else cannot be shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

Maps = TypeVar("Maps", torch.Tensor, np.ndarray)

MAX_EXTRA_TOKENS = 8

CHANNELS_FIRST = "chw"
CHANNELS_LAST = "hwc"
TOKENS = "tokens"
VECTOR = "vector"


@dataclass(frozen=True)
class MapLayout:
    """How one layer output (without the batch dimension) maps onto [C, H, W].

    Attributes:
        kind: 'chw' (CNN), 'hwc' (channels-last, Swin), 'tokens' ([N, D], ViT) or 'vector'.
        channels, height, width: the map shape.
        extra_tokens: leading tokens dropped before the patch grid (tokens only).
    """

    kind: str
    channels: int
    height: int
    width: int
    extra_tokens: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def spatial(self) -> bool:
        """A map with more than one position."""
        return self.kind != VECTOR and self.height * self.width > 1

    @property
    def channel_dim(self) -> int:
        """The channel dimension of the raw output, batch dimension included."""
        return 1 if self.kind in (CHANNELS_FIRST, VECTOR) else -1


def _sides(size: int, stride: int) -> tuple[int, int]:
    return size // stride, -(-size // stride)


def is_grid(height: int, width: int, input_size: tuple[int, int]) -> bool:
    """True when (height, width) is the input size divided by one integer stride."""
    in_h, in_w = input_size
    if height < 1 or width < 1:
        return False
    guess = max(1, round(in_h / height))
    for stride in {max(1, guess - 1), guess, guess + 1}:
        if height in _sides(in_h, stride) and width in _sides(in_w, stride):
            return True
    return False


def _token_grid(count: int, input_size: tuple[int, int]) -> tuple[int, int, int] | None:
    """(extra tokens, h, w) for the fewest extra tokens that leave a grid, or None."""
    in_h, in_w = input_size
    for extra in range(min(MAX_EXTRA_TOKENS, count - 1) + 1):
        patches = count - extra
        for stride in range(1, max(in_h, in_w) + 1):
            for height in set(_sides(in_h, stride)):
                for width in set(_sides(in_w, stride)):
                    if height * width == patches and height * width > 1:
                        return extra, height, width
    return None


def map_layout(
    shape: tuple[int, ...] | None,
    input_size: tuple[int, int] | None = None,
    tokens: tuple[int, int, int] | None = None,
) -> MapLayout | None:
    """The layout of an output of `shape` (no batch dimension) for a model fed `input_size`.

    Without `input_size` only the CNN readings are made ([C, H, W] and [C]). `tokens`
    (prefix tokens, grid height, grid width), when the model states it, decides [N, D]
    sequences of exactly that length before any guess.
    """
    if shape is None:
        return None
    if tokens is not None and len(shape) == 2:
        prefix, height, width = tokens
        if shape[0] == prefix + height * width and height * width > 1:
            return MapLayout(TOKENS, shape[1], height, width, prefix)
    if len(shape) == 1:
        return MapLayout(VECTOR, shape[0], 1, 1)
    if len(shape) == 3:
        first, second, third = shape
        channels_last = (
            input_size is not None
            and is_grid(first, second, input_size)
            and not is_grid(second, third, input_size)
        )
        if channels_last:
            return MapLayout(CHANNELS_LAST, third, first, second)
        return MapLayout(CHANNELS_FIRST, first, second, third)
    if len(shape) == 2 and input_size is not None:
        grid = _token_grid(shape[0], input_size)
        if grid is not None:
            extra, height, width = grid
            return MapLayout(TOKENS, shape[1], height, width, extra)
    return None


def to_maps(output: Maps, layout: MapLayout) -> Maps:
    """A batched output in `layout` as [B, C, H, W] (a view of `output`): a torch tensor on
    the device thread, or a numpy array where captured outputs are read in the CPU pool."""
    if layout.kind == VECTOR:
        return output[:, :, None, None]
    if layout.kind == CHANNELS_LAST:
        return _channels_first(output)
    if layout.kind == TOKENS:
        patches = output[:, layout.extra_tokens :, :]
        return _channels_first(patches.reshape(output.shape[0], layout.height, layout.width, -1))
    return output


def _channels_first(maps: Maps) -> Maps:
    return (
        maps.permute(0, 3, 1, 2) if isinstance(maps, torch.Tensor) else maps.transpose(0, 3, 1, 2)
    )
