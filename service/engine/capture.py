"""Forward hooks that belong to one request.

Hooks are registered on the shared module, so each one checks that it runs in the thread
that registered it: a concurrent request in another thread never sees, or stops, this
request's forward pass. Handles live in a context manager and are removed in `finally`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import torch
from torch import nn

ForwardHook = Callable[[nn.Module, Any, Any], Any]


class StopForward(Exception):
    """Raised by a hook once everything a request needs has been computed."""


def split_call(name: str) -> tuple[str, int | None]:
    """'layer1.0.relu#1' -> ('layer1.0.relu', 1); a bare name -> (name, None)."""
    name = split_member(name)[0]
    base, sep, index = name.rpartition("#")
    return (base, int(index)) if sep and index.isdigit() else (name, None)


def split_member(name: str) -> tuple[str, str | None]:
    """'backbone.fpn:0' -> ('backbone.fpn', '0'): one tensor of a dict/tuple/list output."""
    base, sep, member = name.rpartition(":")
    return (base, member) if sep and base and member else (name, None)


def _key(output: Any, member: str) -> Any:
    """The key of `member` in a dict (as written, or as an int) or its index in a sequence."""
    if isinstance(output, Mapping):
        if member in output:
            return member
        if member.isdigit() and int(member) in output:
            return int(member)
    elif isinstance(output, list | tuple) and member.isdigit() and int(member) < len(output):
        return int(member)
    raise KeyError(member)


def pick(output: Any, member: str) -> Any:
    """The member `member` of a layer's dict, tuple or list output."""
    return output[_key(output, member)]


def _with_member(output: Any, member: str, value: Any) -> Any:
    """A copy of the container `output` whose `member` is `value` (the module's own
    container is never changed)."""
    key = _key(output, member)
    if isinstance(output, Mapping):
        copied = dict(output) if type(output) is dict else type(output)(output)
        copied[key] = value
        return copied
    items = list(output)
    items[key] = value
    if isinstance(output, list):
        return items
    return type(output)(*items) if hasattr(output, "_fields") else type(output)(items)


def _on_member(member: str, fn: ForwardHook) -> ForwardHook:
    """`fn` sees one member of the output; what it returns replaces only that member."""

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        result = fn(module, inputs, pick(output, member))
        return None if result is None else _with_member(output, member, result)

    return hook


@contextmanager
def hooked(model: nn.Module, hooks: Mapping[str, ForwardHook]) -> Iterator[None]:
    """Register forward hooks on named submodules for the current thread only.

    A bare name's hook runs at every call of its module; a `name#k` hook only at the k-th
    call (from 0) of each forward pass of `model`, counted by hooks of this block. A
    `name:member` hook (or `name#k:member`) sees one tensor of a dict, tuple or list output
    (a key or an index), and what it returns replaces that tensor only.
    The handles are removed when the block exits, also on error; removal is idempotent.
    """
    owner = threading.get_ident()
    handles = []
    targets = {name: split_call(name) for name in hooks}
    counted = sorted({base for base, index in targets.values() if index is not None})
    seen = dict.fromkeys(counted, 0)

    def for_owner(fn: ForwardHook) -> ForwardHook:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            if threading.get_ident() != owner:
                return None
            return fn(module, inputs, output)

        return hook

    def count(base: str) -> ForwardHook:
        def hook(_module: nn.Module, _inputs: Any, _output: Any) -> None:
            seen[base] += 1

        return hook

    def at_call(base: str, index: int, fn: ForwardHook) -> ForwardHook:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            return fn(module, inputs, output) if seen[base] == index + 1 else None

        return hook

    def new_pass(_module: nn.Module, _inputs: Any) -> None:
        if threading.get_ident() == owner:
            seen.update(dict.fromkeys(counted, 0))

    try:
        if counted:
            handles.append(model.register_forward_pre_hook(new_pass))
        for base in counted:  # counters first: hooks run in registration order
            handles.append(model.get_submodule(base).register_forward_hook(for_owner(count(base))))
        for name, fn in hooks.items():
            base, index = targets[name]
            member = split_member(name)[1]
            wrapped = fn if member is None else _on_member(member, fn)
            wrapped = wrapped if index is None else at_call(base, index, wrapped)
            handles.append(model.get_submodule(base).register_forward_hook(for_owner(wrapped)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture(
    model: nn.Module,
    inputs: torch.Tensor,
    calls: Mapping[str, int],
    *,
    stop_early: bool = True,
) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for `inputs`, in inference mode.

    Args:
        model: the shared module (left unchanged).
        inputs: the preprocessed batch.
        calls: layer name (or `name#k`, one call) -> how often its hook runs per forward
            pass (the catalog's `calls`); the output of the last is kept, as the module
            returned it (before any later in-place operation of the network rewrites it).
        stop_early: end the forward pass as soon as every layer has made its last call,
            so nothing past the deepest requested layer is computed.
    """
    outputs: dict[str, torch.Tensor] = {}
    seen = dict.fromkeys(calls, 0)

    def recorder(name: str) -> ForwardHook:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            seen[name] += 1
            if stop_early and all(seen[n] >= c for n, c in calls.items()):
                outputs[name] = output
                raise StopForward
            # Later in-place ops (ReLU(inplace=True), `out += identity`) would rewrite the
            # tensor the hook holds; a copy keeps the module's true output. The last layer
            # needs none: the pass stops right after it.
            outputs[name] = output.clone() if isinstance(output, torch.Tensor) else output

        return hook

    recorders = {name: recorder(name) for name in calls}
    with torch.inference_mode(), hooked(model, recorders), suppress(StopForward):
        model(inputs)
    return outputs
