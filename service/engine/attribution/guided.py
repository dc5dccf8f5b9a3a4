"""Guided backpropagation and deconvnet: a ReLU whose backward pass is overridden.

Instead of swapping the model's modules (the model is shared), every ReLU evaluated in
this thread while the override is active is routed through `_ModifiedReLU`: `nn.ReLU`,
`nn.ReLU(inplace=True)`, `F.relu`, `F.relu_`, `torch.relu(_)`, `Tensor.relu(_)` and the
`aten.relu(_)` ops of programs from `torch.export` all reach `__torch_function__` of a
`TorchFunctionMode`, and torch keeps the mode stack per thread, so requests running in
other threads never see it.

- guided backprop (Springenberg et al. 2015, https://arxiv.org/abs/1412.6806): the
  gradient passes where the forward input was positive *and* the gradient is positive;
- deconvnet (Zeiler & Fergus 2014): only the sign of the gradient decides (ReLU applied
  to the gradient, the forward mask is ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

GUIDED = "guided"
DECONV = "deconv"

_OUT_OF_PLACE = {F.relu, torch.relu, torch.Tensor.relu, torch.ops.aten.relu.default}
_IN_PLACE = {F.relu_, torch.relu_, torch.Tensor.relu_, torch.ops.aten.relu_.default}


class _ModifiedReLU(torch.autograd.Function):
    """ReLU forward (in place when asked), guided or deconvnet backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, inplace: bool, deconv: bool) -> torch.Tensor:
        ctx.deconv = deconv
        if inplace:
            ctx.mark_dirty(x)
            out = torch.relu_(x)
        else:
            out = torch.relu(x)
        if not deconv:
            ctx.save_for_backward(out)  # out > 0 exactly where the input was > 0
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if ctx.deconv:
            return grad.clamp(min=0), None, None
        (out,) = ctx.saved_tensors
        return grad.clamp(min=0) * (out > 0).to(grad.dtype), None, None


class _ReluOverride(TorchFunctionMode):
    def __init__(self, deconv: bool) -> None:
        super().__init__()
        self.deconv = deconv

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _OUT_OF_PLACE or func in _IN_PLACE:
            x = args[0] if args else kwargs.get("input")
            if isinstance(x, torch.Tensor) and torch.is_grad_enabled() and x.requires_grad:
                inplace = func in _IN_PLACE or bool(
                    kwargs.get("inplace", args[1] if len(args) > 1 else False)
                )
                return _ModifiedReLU.apply(x, inplace, self.deconv)
        return func(*args, **kwargs)


@contextmanager
def relu_override(mode: str | None) -> Iterator[None]:
    """Within the block, ReLUs evaluated by this thread backpropagate as `mode` says.

    Args:
        mode: 'guided', 'deconv' or None (no override).
    """
    if mode is None:
        with nullcontext():
            yield
        return
    if mode not in (GUIDED, DECONV):
        raise ValueError(f"unknown ReLU override {mode!r}")
    with _ReluOverride(deconv=mode == DECONV):
        yield
