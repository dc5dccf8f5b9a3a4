"""The layer catalog: every named module with its type, output shape and parameter count.

Shapes come from one real forward pass at the model's input size, so the catalog is what
a request will see, not what the code suggests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from model_registry.errors import InvalidInput, unknown_layer
from model_registry.layout import MapLayout, map_layout
from model_registry.token_grid import token_grid


@dataclass(frozen=True)
class LayerInfo:
    """One named module.

    A module that runs several times per forward pass (torchvision's BasicBlock calls
    `self.relu` twice) has one entry under its bare name, which means its last call, and one
    entry per call, `name#k` (k = 0 for the first call), each with its own shape and order.

    Attributes:
        name: dotted name as in `named_modules()`, or `name#k` for the k-th call.
        type: the module's class name.
        output_shape: output shape without the batch dimension (last call), None when the
            output is not a single tensor with one row per image, or the module never ran.
        params: number of parameters, its submodules included.
        calls: how often the module runs in one forward pass (a reused ReLU runs twice); 1
            for a `name#k` entry, which stands for one call.
        order: position at which the call it stands for (the last call for a bare name)
            completed in the forward pass (-1 if it never ran); a container completes after
            its children, so the deepest map is last.
        layout: how the output is read as [C, H, W] maps (channels-first, channels-last,
            ViT tokens or a vector); None: decided from `output_shape` alone, CNN readings only.
        call: k for a `name#k` entry, None for a bare name.
        module: the bare name for a `name#k` entry, None for a bare name.
        members: for an output that is a dict, tuple or list of tensors (an FPN, a detection
            head), its members as 'key [shape]'; None for a tensor output.
        member: for a `name:key` entry, one tensor of such an output (a dict key or an
            index), `module` then being the bare name; None otherwise.
    """

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    calls: int
    order: int
    layout: MapLayout | None = None
    call: int | None = None
    module: str | None = None
    members: tuple[str, ...] | None = None
    member: str | None = None

    @property
    def module_name(self) -> str:
        """The submodule this entry hooks (the name without `#k`)."""
        return self.module if self.module is not None else self.name

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

    def __init__(
        self,
        model_name: str,
        layers: list[LayerInfo],
        calls: list[LayerInfo] | None = None,
        members: list[LayerInfo] | None = None,
    ) -> None:
        self.model_name = model_name
        self._layers = {layer.name: layer for layer in layers}
        self._calls = {call.name: call for call in calls or ()}
        self._members = {member.name: member for member in members or ()}

    def __iter__(self) -> Iterator[LayerInfo]:
        """The named modules (bare names), in `named_modules()` order."""
        return iter(self._layers.values())

    def __len__(self) -> int:
        return len(self._layers)

    def __contains__(self, name: object) -> bool:
        return name in self._layers or name in self._calls or name in self._members

    def entries(self) -> list[LayerInfo]:
        """Every addressable name: each module, followed by its calls when it runs twice+."""
        by_module: dict[str, list[LayerInfo]] = {}
        for call in self._calls.values():
            by_module.setdefault(call.module_name, []).append(call)
        return [e for lay in self for e in (lay, *by_module.get(lay.name, ()))]

    def get(self, name: str, *, field: str = "layers") -> LayerInfo:
        """The layer (one call, `name#k`, or one tensor of a dict/tuple output, `name:key`), or
        a 404 listing the closest names and the URL; a 422 listing the members for a member
        the layer does not have."""
        found = self._layers.get(name) or self._calls.get(name) or self._members.get(name)
        if found is not None:
            return found
        base, sep, member = name.rpartition(":")
        owner = self._layers.get(base) if sep else None
        if owner is not None:
            if owner.members is None:
                raise InvalidInput(
                    f"{field}: '{base}' outputs a single tensor; use '{base}' without ':{member}'",
                    field=field,
                )
            raise InvalidInput(
                f"{field}: '{base}' has no member '{member}'; its members are "
                f"{', '.join(owner.members)} (use '{base}:<key or index>')",
                field=field,
                choices=[f"{base}:{m.split(' ')[0]}" for m in owner.members],
            )
        raise unknown_layer(self.model_name, name, [*self._layers, *self._calls], field=field)

    def not_one_tensor(self, info: LayerInfo) -> str:
        """Why a layer whose output is a dict/tuple cannot be shown, and the tensor layers
        inside it to use instead ('' when its output is not a container)."""
        if info.members is None:
            return ""
        inside = [
            lay.name for lay in self.spatial_layers() if lay.name.startswith(f"{info.name}.")
        ][-8:]
        first = info.members[0].split(" ")[0]
        hint = f", or a layer inside it that outputs one map: {', '.join(inside)}"
        return (
            f"'{info.name}' outputs several tensors ({', '.join(info.members[:8])}), not one "
            f"map; pick one tensor as '{info.name}:<key or index>' (e.g. '{info.name}:{first}')"
            f"{hint if inside else ''}"
        )

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
    """Run one forward pass on zeros of `input_shape` ([C, H, W]) and record every call."""
    grid = token_grid(module)
    tokens = (grid.prefix, grid.height, grid.width) if grid is not None else None
    return _build_catalog(model_name, module, input_shape, device, tokens)


def _build_catalog(
    model_name: str,
    module: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device,
    tokens: tuple[int, int, int] | None,
) -> LayerCatalog:
    shapes: dict[str, list[tuple[int, ...] | None]] = {}
    orders: dict[str, list[int]] = {}
    members: dict[str, tuple[str, ...]] = {}
    member_shapes: dict[str, dict[str, tuple[int, ...] | None]] = {}
    named = [(n, m) for n, m in module.named_modules() if n]
    handles = []
    fired = [0]

    def recorder(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            orders.setdefault(name, []).append(fired[0])
            fired[0] += 1
            # One row per image or no map: Swin's window attention runs on [B * windows, ...].
            one_row = isinstance(output, torch.Tensor) and output.ndim and output.shape[0] == 1
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
            shapes.setdefault(name, []).append(shape if one_row else None)
            found = _members(output)
            if found:
                members[name] = found
                member_shapes[name] = _member_shapes(output)

        return hook

    try:
        for name, sub in named:
            handles.append(sub.register_forward_hook(recorder(name)))
        with torch.inference_mode():
            module(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
    size = (input_shape[1], input_shape[2])
    layers: list[LayerInfo] = []
    calls: list[LayerInfo] = []
    parts: list[LayerInfo] = []
    for name, sub in named:
        typename, params = type(sub).__name__, sum(p.numel() for p in sub.parameters())
        seen, when = shapes.get(name, [None]), orders.get(name, [-1])
        layers.append(
            LayerInfo(
                name=name,
                type=typename,
                output_shape=seen[-1],
                params=params,
                calls=len(orders.get(name, ())),
                order=when[-1],
                layout=map_layout(seen[-1], size, tokens),
                members=members.get(name),
            )
        )
        if len(when) > 1:
            calls.extend(
                LayerInfo(
                    name=f"{name}#{k}",
                    type=typename,
                    output_shape=shape,
                    params=params,
                    calls=1,
                    order=at,
                    layout=map_layout(shape, size, tokens),
                    call=k,
                    module=name,
                )
                for k, (shape, at) in enumerate(zip(seen, when, strict=True))
            )
        parts.extend(
            LayerInfo(
                name=f"{name}:{key}",
                type=typename,
                output_shape=shape,
                params=params,
                calls=len(when) if when != [-1] else 0,
                order=when[-1],
                layout=map_layout(shape, size, tokens),
                module=name,
                member=key,
            )
            for key, shape in member_shapes.get(name, {}).items()
        )
    return LayerCatalog(model_name, layers, calls, parts)


def _member_shapes(output: object) -> dict[str, tuple[int, ...] | None]:
    """key -> shape without the batch dimension of each tensor member (one row per image),
    None for a member that is not one; the output's last call."""
    items = output.items() if isinstance(output, dict) else enumerate(output)  # type: ignore[arg-type]
    return {
        str(key): tuple(value.shape[1:]) if value.ndim and value.shape[0] == 1 else None
        for key, value in items
        if isinstance(value, torch.Tensor)
    }


def _members(output: object) -> tuple[str, ...] | None:
    """'key [shape]' of the tensors in a dict, tuple or list output; None otherwise."""
    if isinstance(output, dict):
        items = list(output.items())
    elif isinstance(output, list | tuple):
        items = list(enumerate(output))
    else:
        return None
    found = tuple(
        f"{key} {list(value.shape[1:])}" for key, value in items if isinstance(value, torch.Tensor)
    )
    return found or None
