"""One layer's output (or input) from a forward pass that stops right after it.

Unlike `capture.capture`, grad mode is the caller's choice: maximization and inversion need
the graph from the input to the layer, statistics and embeddings do not.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from model_registry.registry import LoadedModel
from service.engine.capture import StopForward, hooked
from service.engine.insight.transforms import normalize


def layer_tensor(
    module: nn.Module, inputs: torch.Tensor, layer: str, *, calls: int, take: str = "output"
) -> torch.Tensor:
    """The output (or first positional input, `take="input"`) of `layer`'s last call.

    Args:
        module: the shared model; hooks are removed before this returns, also on error.
        inputs: the normalized batch.
        layer: a name from the catalog.
        calls: how often the layer runs per forward pass (catalog); the last call is kept,
            as a plain forward hook would see it, and the pass stops there.
        take: "output" or "input".
    """
    kept: dict[str, torch.Tensor] = {}
    seen = [0]

    def hook(_module: nn.Module, args: Any, output: Any) -> None:
        kept["value"] = output if take == "output" else args[0]
        seen[0] += 1
        if seen[0] >= calls:
            raise StopForward

    with hooked(module, {layer: hook}), contextlib.suppress(StopForward):
        module(inputs)
    if "value" not in kept:
        raise RuntimeError(f"layer {layer!r} did not run in the forward pass")
    return kept["value"]


def pixel_layer(
    model: LoadedModel, pixels: torch.Tensor, layer: str, *, calls: int
) -> torch.Tensor:
    """`layer`'s float32 output for [0, 1] pixels, normalized with the model's mean and std:
    what maximization and inversion optimize through."""
    normalized = normalize(pixels, model.spec.mean, model.spec.std)
    return layer_tensor(model.module, normalized, layer, calls=calls).float()
