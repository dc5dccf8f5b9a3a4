"""DeepLIFT's Rescale rule through a `TorchFunctionMode`, correct on modules that run twice.

The input and its baseline run as one batch [x; x']. Every ReLU and max pooling
evaluated in this thread while `rescale_rules` is active is routed through an autograd
function whose backward pass uses the multipliers of Shrikumar et al. 2017
(https://arxiv.org/abs/1704.02685) for that call alone: (y - y') / (x - x') where
|x - x'| > 1e-10, the gradient elsewhere. Captum attaches the rule to modules with
hooks, so a module called twice (torchvision's BasicBlock `relu`) mixes its calls
(captum issues 199, 378, 1104); here each call pairs its own inputs. Linear operations
(convolutions, batch norm in eval, additions, average pooling) keep their gradient, so
the attributions (x - x') * multipliers sum to f(x) - f(x').
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from service.engine.attribution.guided import _IN_PLACE, _OUT_OF_PLACE

EPS = 1e-10  # Captum's DeepLift eps
_MAX_POOLS = {F.max_pool2d, torch.max_pool2d}


def _halves(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    first, second = tensor.chunk(2)
    return first, second


class _RescaleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        ctx.save_for_backward(x.clone() if inplace else x)
        if inplace:
            ctx.mark_dirty(x)
            return torch.relu_(x)
        return torch.relu(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        x_in, x_ref = _halves(x)
        delta_in = x_in - x_ref
        delta_out = torch.relu(x_in) - torch.relu(x_ref)
        plain = (x_in > 0).to(grad.dtype)
        rescale = torch.where(delta_in.abs() > EPS, delta_out / delta_in, plain)
        return grad * torch.cat([rescale, rescale]), None


def _scatter(values: torch.Tensor, indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Max unpooling that adds values sent to the same input (overlapping windows)."""
    out = torch.zeros_like(like).flatten(2)
    out.scatter_add_(2, indices.flatten(2), values.flatten(2))
    return out.view_as(like)


class _RescaleMaxPool(torch.autograd.Function):
    """Captum's max-pool rule: the output change split between the argmax of the input and
    that of the baseline, divided by the input change; sums to the output change."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, options: dict) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.options = options
        return F.max_pool2d(x, **options)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        x_in, x_ref = _halves(x)
        out, where = F.max_pool2d(x_in, **ctx.options, return_indices=True)
        out_ref, where_ref = F.max_pool2d(x_ref, **ctx.options, return_indices=True)
        g_in, _ = _halves(grad)  # both halves get the same multipliers, as in Captum
        top = torch.max(out, out_ref)
        moved = _scatter(g_in * (top - out_ref), where, x_in) + _scatter(
            g_in * (out - top), where_ref, x_in
        )
        delta_in = x_in - x_ref
        plain = _scatter(g_in, where, x_in)
        rescaled = torch.where(delta_in.abs() > EPS, moved / delta_in, plain)
        return torch.cat([rescaled, rescaled]), None


_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")


class _Rescale(TorchFunctionMode):
    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        x = args[0] if args else kwargs.get("input")
        tracked = isinstance(x, torch.Tensor) and torch.is_grad_enabled() and x.requires_grad
        if tracked and (func in _OUT_OF_PLACE or func in _IN_PLACE):
            inplace = func in _IN_PLACE or bool(
                kwargs.get("inplace", args[1] if len(args) > 1 else False)
            )
            return _RescaleReLU.apply(x, inplace)
        if tracked and func in _MAX_POOLS and not kwargs.get("return_indices", False):
            options = dict(zip(_POOL_ARGS, args[1:], strict=False))
            options.update({k: v for k, v in kwargs.items() if k in _POOL_ARGS})
            if options.get("stride") in (None, []):
                options["stride"] = options["kernel_size"]
            return _RescaleMaxPool.apply(x, options)
        return func(*args, **kwargs)


@contextmanager
def rescale_rules() -> Iterator[None]:
    """Within the block, this thread's ReLUs and max pools backpropagate DeepLIFT multipliers
    for a batch [inputs; baselines] of two equal halves."""
    with _Rescale():
        yield


def deeplift(
    module: torch.nn.Module,
    x: torch.Tensor,
    reference: torch.Tensor,
    score: Any,
) -> torch.Tensor:
    """(x - x') * multipliers of score(output) [R] for rows x [R, C, H, W] and baselines x'."""
    paired = torch.cat([x, reference]).detach().requires_grad_(True)
    with torch.enable_grad(), rescale_rules():
        scores = score(module(paired))
        (grad,) = torch.autograd.grad(scores.sum(), paired)
    return (x - reference) * grad[: x.shape[0]]
