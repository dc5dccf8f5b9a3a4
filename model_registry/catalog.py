"""The layer catalog: every named module with its type, output shape and parameter count.

Shapes come from one real forward pass at the model's input size, so the catalog is what
a request will see, not what the code suggests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from model_registry.errors import unknown_layer
from model_registry.layout import MapLayout, map_layout


@dataclass(frozen=True)
class LayerInfo:
    """One named module.

    Attributes:
        name: dotted name as in `named_modules()`.
        type: the module's class name.
        output_shape: output shape without the batch dimension (last call), None when the
            output is not a single tensor with one row per image, or the module never ran.
        params: number of parameters, its submodules included.
        calls: how often the module runs in one forward pass (a reused ReLU runs twice).
        order: position at which its first call completed in the forward pass (-1 if it
            never ran); a container completes after its children, so the deepest map is last.
        layout: how the output is read as [C, H, W] maps (channels-first, channels-last,
            ViT tokens or a vector); None: decided from `output_shape` alone, CNN readings only.
    """

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    calls: int
    order: int
    layout: MapLayout | None = None

    @property
    def map_layout(self) -> MapLayout | None:
        return self.layout if self.layout is not None else map_layout(self.output_shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int] | None:
        """The [C, H, W] the output is shown as (a vector as [C, 1, 1]); None if it cannot be."""
        layout = self.map_layout
        return layout.shape if layout is not None else None

    @property
    def spatial(self) -> bool:
        """True when the output reads as a [C, H, W] map with more than one position."""
        layout = self.map_layout
        return layout is not None and layout.spatial


class LayerCatalog:
    """Ordered name -> LayerInfo map for one model."""

    def __init__(self, model_name: str, layers: list[LayerInfo]) -> None:
        self.model_name = model_name
        self._layers = {layer.name: layer for layer in layers}

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self._layers.values())

    def __len__(self) -> int:
        return len(self._layers)

    def __contains__(self, name: object) -> bool:
        return name in self._layers

    def get(self, name: str, *, field: str = "layers") -> LayerInfo:
        """The layer, or a 404 error that lists the closest names and the catalog URL."""
        try:
            return self._layers[name]
        except KeyError:
            raise unknown_layer(self.model_name, name, self._layers, field=field) from None

    def spatial_layers(self) -> list[LayerInfo]:
        """Layers with a [C, H, W] output, in forward order."""
        return sorted((lay for lay in self if lay.spatial and lay.calls), key=lambda lay: lay.order)

    def last_spatial_layer(self) -> LayerInfo:
        layers = self.spatial_layers()
        if not layers:
            raise LookupError(f"model {self.model_name!r} has no layer with a spatial output")
        return layers[-1]


def build_catalog(
    model_name: str, module: nn.Module, input_shape: tuple[int, ...], device: torch.device
) -> LayerCatalog:
    """Run one forward pass on zeros of `input_shape` ([C, H, W]) and record every module."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    calls: dict[str, int] = {}
    order: dict[str, int] = {}
    named = [(n, m) for n, m in module.named_modules() if n]
    handles = []

    def recorder(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            order.setdefault(name, len(order))
            # One row per image or no map: Swin's window attention runs on [B * windows, ...].
            one_row = isinstance(output, torch.Tensor) and output.ndim and output.shape[0] == 1
            shapes[name] = tuple(output.shape[1:]) if one_row else None

        return hook

    try:
        for name, sub in named:
            handles.append(sub.register_forward_hook(recorder(name)))
        with torch.inference_mode():
            module(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
    layers = [
        LayerInfo(
            name=name,
            type=type(sub).__name__,
            output_shape=shapes.get(name),
            params=sum(p.numel() for p in sub.parameters()),
            calls=calls.get(name, 0),
            order=order.get(name, -1),
            layout=map_layout(shapes.get(name), (input_shape[1], input_shape[2])),
        )
        for name, sub in named
    ]
    return LayerCatalog(model_name, layers)
