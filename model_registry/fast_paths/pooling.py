"""Faster max pooling for inference on CPU: the same values, in less time.

torch's CPU max pooling of a channels-first tensor is slow: resnet18's stem pool (64
channels at 112 x 112) is a visible share of its forward pass. The same kernel on a
channels-last copy is vectorized over channels and is several times faster, conversions
included (`bench/threads.py` measures both). A maximum is exact, so the values are bitwise
equal, and NaNs propagate alike (`tests/model_registry/test_pooling.py` checks kernels,
strides, padding, dilation and ceil mode, with NaNs).

Only passes that record no gradient take this path: with a graph, the channels-last backward
pass is slower, and gradient methods keep torch's own kernel. Small maps and maps with few
channels keep it too, where the copies cost more than they save.
`LAYERSCOPE_CHANNELS_LAST_POOLING=false` keeps torch's kernel everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_VALUES = 1 << 17  # below this, the two layout copies cost more than they save
MIN_CHANNELS = 16  # channels-last kernels vectorize over channels


def speed_up_max_pooling(module: nn.Module) -> int:
    """Give every plain `nn.MaxPool2d` in `module` the channels-last inference path.

    Subclasses (timm's `MaxPool2dSame`, a user's own) keep their forward. The override is an
    attribute of each instance, so module types, names and hooks are unchanged. Returns the
    number of layers changed.
    """
    changed = 0
    for sub in module.modules():
        if type(sub) is nn.MaxPool2d and "forward" not in vars(sub):
            sub.forward = _channels_last_forward.__get__(sub)
            changed += 1
    return changed


def _channels_last_forward(self: nn.MaxPool2d, x: torch.Tensor) -> torch.Tensor:
    if (
        self.return_indices
        or x.device.type != "cpu"
        or x.dim() != 4
        or x.shape[1] < MIN_CHANNELS
        or x.numel() < MIN_VALUES
        or not x.is_contiguous()
        or (x.requires_grad and torch.is_grad_enabled())
    ):
        return nn.MaxPool2d.forward(self, x)
    pooled = F.max_pool2d(
        x.contiguous(memory_format=torch.channels_last),
        self.kernel_size,
        self.stride,
        self.padding,
        self.dilation,
        ceil_mode=self.ceil_mode,
    )
    return pooled.contiguous()
