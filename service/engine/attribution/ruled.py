"""A zennit composite's rules run as autograd Functions, so no layer's own backward is wasted.

zennit registers a rule with hooks: an `Identity` before the layer, whose backward hook
replaces the gradient that the layer's own backward computed with the rule's relevance.
That layer backward (for a convolution as costly as its forward) is computed and thrown
away. Here each ruled leaf layer runs its forward inside an autograd Function (no graph
through the layer) whose backward calls the same rule (`hook.backward`, with the layer's
input cloned as zennit's hook clones it and the same upper relevance), so the relevance is
zennit's and the discarded backward is never computed.

Only rules whose propagation is zennit's `BasicHook` one (every LRP rule) or `Pass` are run
so, on leaf layers called with one tensor; any other rule or layer gets zennit's own hooks.
The layers' `forward` is replaced on the module instance (LRP runs on a canonized copy)
and restored by `RuledLayers.remove`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from zennit.core import BasicHook, Composite, Hook, RemovableHandleList
from zennit.rules import Pass

_MISSING = object()


def _runs_as_function(hook: Hook, module: nn.Module) -> bool:
    if next(module.children(), None) is not None:
        return False
    if isinstance(hook, Pass):
        return type(hook).forward is Hook.forward
    return (
        isinstance(hook, BasicHook)
        and type(hook).backward is BasicHook.backward
        and type(hook).forward is BasicHook.forward
    )


class _Ruled(torch.autograd.Function):
    """Forward: the layer on a clone of its input, without a graph; backward: the rule."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, layer: _RuledForward) -> torch.Tensor:
        stored = input.clone()  # as zennit's pre-forward hook: the layer may work in place
        output = layer.original(stored)
        ctx.layer, ctx.stored = layer, stored
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        layer, stored = ctx.layer, ctx.stored
        del ctx.stored
        hook = layer.hook
        hook.stored_tensors["input"] = (stored,)
        layer.busy = True  # the rule calls the layer's forward: the plain one, with a graph
        try:
            (relevance, *_) = hook.backward(layer.module, (stored,), (grad_output,))
        finally:
            layer.busy = False
            hook.stored_tensors.pop("input", None)
        return relevance, None


class _RuledForward:
    """Stands for a layer's `forward` while its rule is registered."""

    def __init__(self, module: nn.Module, hook: Hook) -> None:
        self.module, self.hook = module, hook
        self.saved = module.__dict__.get("forward", _MISSING)
        self.original = module.forward
        self.busy = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if (
            self.busy
            or kwargs
            or len(args) != 1
            or not isinstance(args[0], torch.Tensor)
            or not (torch.is_grad_enabled() and args[0].requires_grad)
        ):
            return self.original(*args, **kwargs)
        return _Ruled.apply(args[0], self)

    def restore(self) -> None:
        if self.saved is _MISSING:
            del self.module.forward
        else:
            self.module.forward = self.saved


class RuledLayers:
    """`composite`'s rules on `module`'s layers (as `composite.register(module)` places them,
    canonizers aside: `module` must be canonized already) until `remove()`."""

    def __init__(self, composite: Composite, module: nn.Module) -> None:
        self.layers: list[_RuledForward] = []
        self.handles = RemovableHandleList()
        try:
            context: dict[str, Any] = {}
            for name, child in module.named_modules():
                template = composite.module_map(context, name, child)
                if template is None:
                    continue
                hook = template.copy()
                if _runs_as_function(hook, child):
                    layer = _RuledForward(child, hook)
                    self.layers.append(layer)
                    child.forward = layer
                else:
                    self.handles.append(hook.register(child))
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        while self.layers:
            layer = self.layers.pop()
            layer.restore()
            layer.hook.stored_tensors.clear()
        self.handles.remove()
