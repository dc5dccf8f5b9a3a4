"""Activation statistics per layer: sparsity, moments, dead channels, channel means.

Statistics are accumulated inside the forward hooks and the activations dropped at once, so
asking for every layer of a large model costs one forward pass and a few numbers per
layer, not every activation of the batch held in memory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from model_registry.errors import InvalidInput
from model_registry.layout import CHANNELS_LAST, TOKENS, MapLayout, to_maps
from model_registry.registry import LoadedModel
from service.engine.capture import StopForward, hooked
from service.engine.insight.draw import line_chart, stack


@dataclass(frozen=True)
class LayerStats:
    """One layer over all images.

    Attributes:
        name, type, depth: the layer, its module type and its position in the forward pass.
        shape: output shape without the batch dimension.
        sparsity: fraction of elements <= 0.
        mean, std, max: over every element of every image.
        dead_fraction: fraction of channels (dimension 1) never > 0 for any image or position;
            None unless the output comes out of a ReLU-like nonlinearity (see `relu_like`):
            for a convolution before batch norm or for logits "never > 0" means nothing.
        channel_means: float32 [C], mean per channel.
        histogram: (edges [BINS + 1], counts [BINS]) of every activation.
    """

    name: str
    type: str
    depth: int
    shape: tuple[int, ...]
    sparsity: float
    mean: float
    std: float
    max: float
    dead_fraction: float | None
    channel_means: np.ndarray
    histogram: tuple[np.ndarray, np.ndarray]


BINS = 32
# Activations whose "never above zero" marks a dead unit: ReLU and its relatives.
RELU_LIKE = frozenset(
    {"ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "CELU", "SELU", "GELU", "SiLU"}
    | {"Mish", "Hardswish", "Threshold"}
)


def relu_like(layer_type: str, minimum: float) -> bool:
    """True for a ReLU-like module, or an output no value of which is negative (pooling or a
    block after a ReLU), where a channel that never exceeds zero is dead."""
    return layer_type in RELU_LIKE or minimum >= 0


@dataclass
class _Accumulator:
    """Running sums in float64 for one layer."""

    count: int = 0
    nonpositive: int = 0
    total: float = 0.0
    squares: float = 0.0
    maximum: float = float("-inf")
    minimum: float = float("inf")
    histogram: tuple[np.ndarray, np.ndarray] | None = None
    channel_sum: torch.Tensor | None = None
    channel_count: int = 0
    channel_alive: torch.Tensor | None = None
    calls: int = 0
    shape: tuple[int, ...] = field(default_factory=tuple)

    def add(self, output: torch.Tensor) -> None:
        values = output.detach().to(torch.float64)
        self.shape = tuple(values.shape[1:])
        self.count += values.numel()
        self.nonpositive += int((values <= 0).sum())
        self.total += float(values.sum())
        self.squares += float((values * values).sum())
        self.maximum = max(self.maximum, float(values.max()))
        self.minimum = min(self.minimum, float(values.min()))
        # One call per forward pass of the whole batch (compute_stats runs one pass), so the
        # histogram of this call is the layer's.
        counts, edges = np.histogram(values.float().cpu().numpy(), bins=BINS)
        self.histogram = (edges.astype(np.float64), counts.astype(np.int64))
        per_channel = values.transpose(0, 1).reshape(values.shape[1], -1)
        sums = per_channel.sum(dim=1).cpu()
        alive = (per_channel > 0).any(dim=1).cpu()
        self.channel_sum = sums if self.channel_sum is None else self.channel_sum + sums
        self.channel_alive = alive if self.channel_alive is None else self.channel_alive | alive
        self.channel_count += per_channel.shape[1]


def as_channels_first(output: torch.Tensor, layout: MapLayout | None) -> torch.Tensor:
    """ViT tokens (prefix tokens dropped) and Swin's [B, H, W, C] as [B, C, H, W] maps."""
    if layout is not None and layout.kind in (TOKENS, CHANNELS_LAST):
        return to_maps(output, layout)
    return output


def stats_layers(model: LoadedModel) -> list[str]:
    """Layers statistics can describe: a single tensor output with a channel dimension."""
    layers = [
        lay
        for lay in model.catalog
        if lay.output_shape is not None and len(lay.output_shape) >= 1 and lay.calls
    ]
    return [lay.name for lay in sorted(layers, key=lambda lay: lay.order)]


def plan_stats(model: LoadedModel, layers: list[str]) -> tuple[str, ...]:
    """Requested layers in forward order; empty means every layer with a tensor output."""
    usable = stats_layers(model)
    if not layers:
        return tuple(usable)
    for name in layers:
        info = model.catalog.get(name, field="layers")
        if info.call is not None and info.output_shape is not None:
            usable.append(info.name)  # one call of a reused module, asked for by name
        elif info.name not in usable:
            raise InvalidInput(
                f"layers: '{info.name}' has no single tensor output with channels (output shape "
                f"{info.output_shape}); see GET /v1/models/{model.name}/layers",
                field="layers",
            )
    wanted = set(layers)
    picked = [name for name in usable if name in wanted]
    return tuple(sorted(picked, key=lambda name: model.catalog.get(name).order))


def compute_stats(
    model: LoadedModel, batch: torch.Tensor, layers: tuple[str, ...]
) -> list[LayerStats]:
    """One forward pass in inference mode, stopped after the deepest requested layer.

    A module that runs several times per pass (a reused ReLU) is described by its last
    call, as feature maps show it.
    """
    infos = {name: model.catalog.get(name) for name in layers}
    accumulators = {name: _Accumulator() for name in layers}
    finished: set[str] = set()

    def recorder(name: str):
        calls = infos[name].calls
        layout = infos[name].map_layout
        accumulator = accumulators[name]

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            accumulator.calls += 1
            if accumulator.calls % calls == 0 and isinstance(output, torch.Tensor):
                accumulator.add(as_channels_first(output, layout))
                finished.add(name)
                if len(finished) == len(layers):
                    raise StopForward

        return hook

    hooks = {name: recorder(name) for name in layers}
    with torch.inference_mode(), hooked(model.module, hooks), contextlib.suppress(StopForward):
        model.module(batch)
    results = []
    for name in layers:
        acc = accumulators[name]
        if acc.channel_sum is None or acc.channel_alive is None or acc.histogram is None:
            continue
        dead = float((~acc.channel_alive).float().mean())
        mean = acc.total / acc.count
        variance = max(acc.squares / acc.count - mean * mean, 0.0)
        results.append(
            LayerStats(
                name=name,
                type=infos[name].type,
                depth=infos[name].order,
                shape=acc.shape,
                sparsity=acc.nonpositive / acc.count,
                mean=mean,
                std=float(np.sqrt(variance)),
                max=acc.maximum,
                dead_fraction=dead if relu_like(infos[name].type, acc.minimum) else None,
                channel_means=(acc.channel_sum / acc.channel_count).numpy().astype(np.float32),
                histogram=acc.histogram,
            )
        )
    return results


def render_stats(results: list[LayerStats], *, title: str) -> np.ndarray:
    """Sparsity and mean activation by depth, dots coloured by layer type, one chart each."""
    names = [r.name for r in results]
    kinds = [r.type for r in results]
    sparsity = line_chart(
        names,
        [r.sparsity for r in results],
        title=f"{title}: sparsity (fraction of activations <= 0)",
        y_range=(0.0, 1.0),
        categories=kinds,
    )
    means = line_chart(names, [r.mean for r in results], title="mean activation", categories=kinds)
    return stack([sparsity, means])
