"""The packed convolutions of a whole model checked once at load time against torch's.

A model may read a convolution's output in a way only torch's channels-first answer
suits (`.view` on it, say); such a model keeps torch's kernels, and one warning names
the model and the layer to blame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from model_registry.fast_paths.packed_convolution import (
    agrees,
    packed_layers,
    packed_weights,
    remove_packing,
)

log = logging.getLogger("layerscope.models")


def check_whole_model(module: nn.Module, example: torch.Tensor, *, model: str = "model") -> bool:
    """Run `example` through `module` with torch's kernels and with packed weights; where the
    forward pass fails or the outputs differ (a model that calls `.view` on a convolution's
    channels-last output, say), remove the packing and warn, naming `model` and the layer
    to blame (`_culprit`). Returns whether it stayed; the layers keep the weights
    reordered for `example`'s shape."""
    layers = packed_layers(module)
    if not layers:
        return False
    why = None
    try:
        with torch.inference_mode():
            with packed_weights(False):  # torch's kernels, whatever the caller's switch
                expected = list(_tensors(module(example)))
            with packed_weights():
                got = list(_tensors(module(example)))
        if len(got) != len(expected) or not all(
            agrees(a, b, rtol=1e-3) for a, b in zip(got, expected, strict=True)
        ):
            why = "its outputs differ from torch's kernel's"
    except Exception as exc:  # noqa: BLE001 - any failure means: keep torch's kernels
        why = f"the forward pass failed ({exc})"
    if why is None:
        return True
    layer, departs = _culprit(module, example)
    where = f"; the packed pass departs at '{departs}'" if departs and departs != layer else ""
    log.warning(
        "packed convolutions off for model '%s', layer '%s': %s%s", model, layer, why, where
    )
    remove_packing(module)
    return False


def _culprit(module: nn.Module, example: torch.Tensor) -> tuple[str, str | None]:
    """(the packed layer to blame, the leaf module where the packed pass first departs from
    torch's, None when no module's output does: the failure came after the last one).

    Both passes run again with a forward hook on every leaf module, removed in `finally`;
    the blamed layer is the last packed one called at or before that departure.
    """
    names = {sub: name for name, sub in module.named_modules()}
    layers = packed_layers(module)
    packed = set(layers)
    leaves = [sub for sub in names if next(sub.children(), None) is None]
    runs: list[list[tuple[nn.Module, list[torch.Tensor]]]] = []
    for enabled in (False, True):
        calls: list[tuple[nn.Module, list[torch.Tensor]]] = []

        def record(sub: nn.Module, _args: object, out: object, calls: list = calls) -> None:
            calls.append((sub, [t.clone() for t in _tensors(out)]))

        handles = [sub.register_forward_hook(record) for sub in leaves]
        try:
            with torch.inference_mode(), packed_weights(enabled):
                module(example)
        except Exception:  # noqa: BLE001, S110 - the calls before the failure are what counts
            pass
        finally:
            for handle in handles:
                handle.remove()
        runs.append(calls)
    plain, fast = runs
    blamed = layers[0]
    for index, (sub, outputs) in enumerate(fast):
        blamed = sub if sub in packed else blamed
        other = plain[index] if index < len(plain) else None
        if (
            other is None
            or other[0] is not sub
            or len(other[1]) != len(outputs)
            or not all(agrees(a, b, rtol=1e-3) for a, b in zip(outputs, other[1], strict=True))
        ):
            return names[blamed], names[sub]
    return names[blamed], None


def _tensors(output: object) -> Iterator[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, Mapping):
        for value in output.values():
            yield from _tensors(value)
    elif isinstance(output, (list, tuple)):
        for value in output:
            yield from _tensors(value)
