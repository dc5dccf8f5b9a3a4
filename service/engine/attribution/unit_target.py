"""A unit of a layer as what an attribution explains: `unit=L:K` or `unit=L:K@y,x`.

`L:K` is the spatial mean of channel K of layer L's output read as maps
(`model_registry.layout`), `L:K@y,x` its value at one position, as Captum's neuron methods
take a `neuron_selector`. Every method scores forward passes with `Target.scores(output,
images)`; for a unit, `unit_as_output` makes the model's output the unit's layer output
while the request runs, so every method (gradients, CAMs, perturbations) explains the unit
without knowing it is one. The layer is hooked at the start of each forward pass, after the
request's other hooks, so where a CAM's graph starts at that same layer the unit reads the
graph's tensor.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from model_registry.errors import InvalidInput
from model_registry.layout import MapLayout, to_maps
from model_registry.registry import LoadedModel
from service.engine.attribution.target_objects import Target

GRAMMAR = "LAYER:CHANNEL (the channel's spatial mean) or LAYER:CHANNEL@Y,X (one position)"
_UNIT = re.compile(r"^(?P<layer>.+):(?P<channel>\d{1,7})(?:@(?P<y>\d{1,6}),(?P<x>\d{1,6}))?$")


@dataclass(frozen=True)
class UnitRequest:
    """A validated unit: `layer` (a module, read at its last call) whose output reads as
    `layout`, run at catalog position `order`; `channel`; `position` (y, x) or None for the
    spatial mean."""

    layer: str
    order: int
    layout: MapLayout
    channel: int
    position: tuple[int, int] | None = None

    @property
    def count(self) -> int:
        return 1

    @property
    def text(self) -> str:
        where = "" if self.position is None else "@{},{}".format(*self.position)
        return f"{self.layer}:{self.channel}{where}"

    def resolve(self, output: Any, batch: torch.Tensor) -> UnitTarget:
        classes = torch.full((batch.shape[0], 1), self.channel, dtype=torch.long)
        return UnitTarget(classes.to(batch.device), self)


@dataclass(frozen=True)
class UnitTarget(Target):
    """`classes` [B, 1] hold the unit's channel; `scores` reads the unit from the output
    `unit_as_output` gives the forward passes."""

    unit: UnitRequest

    def scores(self, output: Any, images: torch.Tensor) -> torch.Tensor:
        unit = self.unit
        if not isinstance(output, torch.Tensor):
            raise InvalidInput(f"unit: layer '{unit.layer}' gave no tensor", field="unit")
        maps = to_maps(output, unit.layout)[:, unit.channel]
        if unit.position is None:
            return maps.mean(dim=(-2, -1))[:, None]
        y, x = unit.position
        return maps[:, y, x][:, None]

    def select(self, part: slice) -> UnitTarget:
        return UnitTarget(self.classes[part], self.unit)


def explains_unit(request: object) -> bool:
    return isinstance(request, UnitRequest)


def parse_unit(model: LoadedModel, text: str) -> UnitRequest:
    """The unit `text` names; 422 naming the grammar, the channels or the map's range."""
    match = _UNIT.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"unit: cannot read '{text[:80]}'; expected {GRAMMAR}", field="unit")
    info = model.catalog.get(match["layer"], field="unit")
    layout = info.map_layout
    if info.call is not None or info.member is not None or layout is None or info.calls == 0:
        raise InvalidInput(
            f"unit: '{info.name}' is not a module whose output reads as [C, H, W], [C] or ViT "
            "tokens (a unit reads a module's last call; `name#k` and `name:member` are not "
            "units)",
            field="unit",
        )
    channel = int(match["channel"])
    if channel >= layout.channels:
        raise InvalidInput(
            f"unit: channel {channel} is outside layer '{info.name}', which has "
            f"{layout.channels} channels (valid: 0-{layout.channels - 1})",
            field="unit",
            valid_range=[0, layout.channels - 1],
        )
    position = None
    if match["y"] is not None:
        y, x = int(match["y"]), int(match["x"])
        if y >= layout.height or x >= layout.width:
            raise InvalidInput(
                f"unit: position ({y}, {x}) is outside the {layout.height} x {layout.width} "
                f"map of layer '{info.name}' (valid: y 0-{layout.height - 1}, "
                f"x 0-{layout.width - 1})",
                field="unit",
                valid_range=[[0, layout.height - 1], [0, layout.width - 1]],
            )
        position = (y, x)
    return UnitRequest(info.name, info.order, layout, channel, position)


def check_layer_before_unit(
    model: LoadedModel, request: object, layers: list[str] | tuple[str, ...], *, field: str
) -> None:
    """422 for a layer that runs after the unit's layer: the unit does not depend on it, so
    its gradient is zero and its map explains nothing about the unit."""
    if not isinstance(request, UnitRequest):
        return
    for name in layers:
        info = model.catalog.get(name, field=field)
        if info.order > request.order:
            raise InvalidInput(
                f"{field}: '{info.name}' runs after the unit's layer '{request.layer}'; the "
                "unit does not depend on it, so its map would explain nothing about the unit. "
                f"Use '{request.layer}' or a layer before it",
                field=field,
                unit=request.text,
            )


# The methods that cannot explain a unit, and why (every other method of /v1/methods can).
NO_UNIT = {
    "fullgrad": "its bias gradients come from every layer of the model, also those after "
    "the unit, whose gradients are zero",
    "cam": "it weights the layer by the classifier's weights of a class; a unit has none",
    "finercam": "it contrasts the target class with the classes whose logits are nearest; "
    "a unit has no other classes",
    "legrad": "it scores each block's class token through the model's classifier head; a "
    "unit is not a class of the head",
    "lrp": "zennit propagates relevance from the model's output of a canonized copy (BatchNorm "
    "merged into the layer before it), whose layers are not the shared model's",
}


def check_unit_method(request: object, method: str) -> None:
    """422 saying why, for a method that cannot explain a unit (`NO_UNIT`)."""
    if isinstance(request, UnitRequest) and method in NO_UNIT:
        raise InvalidInput(
            f"unit: method={method} cannot explain a unit: {NO_UNIT[method]}; use another "
            "method (GET /v1/methods), such as gradcam with a layer up to the unit's",
            field="unit",
        )


def check_unit_cam(model: LoadedModel, request: object, method: str, layers: list[str]) -> None:
    """A CAM of a unit: a method that can explain one, every layer at or before the unit's."""
    check_unit_method(request, method)
    check_layer_before_unit(model, request, layers, field="layer")


def check_unit_options(
    request: object, *, metrics: bool = False, randomize: int = 0, aug_smooth: bool = False
) -> None:
    """The options a unit target cannot take, each refused by name."""
    if not isinstance(request, UnitRequest):
        return
    if metrics:
        raise InvalidInput(
            "metrics: deletion and insertion track a class probability; a unit has none",
            field="metrics",
        )
    if randomize:
        raise InvalidInput(
            "randomize: the sanity check re-runs a randomized copy of the model's output; "
            "with unit= leave it at 0",
            field="randomize",
        )
    if aug_smooth and request.position is not None:
        raise InvalidInput(
            f"aug_smooth: flips the input, but the unit {request.text} is one position of the "
            "map, which does not flip with it; use the unit's spatial mean (no @y,x)",
            field="aug_smooth",
        )


@contextmanager
def unit_as_output(module: nn.Module, request: object) -> Iterator[None]:
    """While inside (this thread only), `module(x)` returns the unit's layer output (its
    last call) instead of the model's; no-op for any other request. Hooks are removed on
    exit, also on error."""
    if not isinstance(request, UnitRequest):
        yield
        return
    owner = threading.get_ident()
    layer = module.get_submodule(request.layer)
    recorded: list[Any] = []
    live: list[RemovableHandle] = []

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if threading.get_ident() == owner:
            recorded[:] = [output]

    def start(_module: nn.Module, _inputs: Any) -> None:
        if threading.get_ident() != owner:
            return
        _drop(live)
        recorded.clear()
        # registered now, after the request's own hooks: it sees what they hand on
        live.append(layer.register_forward_hook(record))

    def finish(_module: nn.Module, _inputs: Any, _output: Any) -> Any:
        if threading.get_ident() != owner:
            return None
        _drop(live)
        if not recorded:
            raise InvalidInput(f"unit: layer '{request.layer}' did not run", field="unit")
        return recorded[-1]

    handles = [module.register_forward_pre_hook(start), module.register_forward_hook(finish)]
    try:
        yield
    finally:
        _drop(handles)
        _drop(live)


def _drop(handles: list[RemovableHandle]) -> None:
    while handles:
        handles.pop().remove()
