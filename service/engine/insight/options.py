"""Validation shared by the insight computations: usable layers, channels, neurons,
directions and the optimizers' ranges.

Everything here raises `InvalidInput` (422) naming the argument, before any computation.
"""

from __future__ import annotations

import math

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.layout import CHANNELS_FIRST, VECTOR
from model_registry.registry import LoadedModel
from service.engine.channels import out_of_range
from service.engine.checks import Bound, check_finite

# The optimizers' fixed ranges, shared by maximize and invert (the route models read them).
LR = Bound(0.0, 10.0, strict_low=True)
TV = Bound(0.0, 1e6)


def activation_layer(model: LoadedModel, layer: str, *, field: str = "layer") -> LayerInfo:
    """A layer whose output is a [C, H, W] map or a [C] vector and that runs in forward.

    Raises:
        NotFound: unknown layer (with the closest names).
        InvalidInput: the layer's output cannot be addressed by channel.
    """
    info = model.catalog.get(layer, field=field)
    shape = info.output_shape
    layout = info.map_layout
    # Token and channels-last outputs are shown as maps, but are not optimized through here.
    if layout is None or layout.kind not in (CHANNELS_FIRST, VECTOR) or info.calls == 0:
        suitable = [
            lay.name
            for lay in model.catalog.spatial_layers()
            if (found := lay.map_layout) is not None and found.kind == CHANNELS_FIRST
        ][-10:]
        raise InvalidInput(
            f"{field}: '{info.name}' has no [C, H, W] or [C] output (output shape {shape}); "
            f"pick a layer such as {', '.join(suitable)}",
            field=field,
            suitable=suitable,
        )
    return info


def check_channel(channel: int, num_channels: int, *, layer: str, field: str = "channel") -> int:
    if not 0 <= channel < num_channels:
        raise out_of_range(channel, num_channels, layer=layer, field=field)
    return channel


def parse_neuron(text: str, *, field: str = "neuron") -> tuple[int, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise InvalidInput(
            f"{field}: expected 'x,y' with two non-negative integers, got '{text}'", field=field
        )
    return int(parts[0]), int(parts[1])


def parse_direction(
    text: str, num_channels: int, *, layer: str, field: str = "direction"
) -> tuple[float, ...]:
    """A comma-separated vector over the layer's channels, normalized to unit length."""
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError as exc:
        raise InvalidInput(
            f"{field}: expected comma-separated numbers, got '{text[:80]}'", field=field
        ) from exc
    if len(values) != num_channels:
        raise InvalidInput(
            f"{field}: needs {num_channels} values (one per channel of layer '{layer}'), "
            f"got {len(values)}",
            field=field,
            expected_length=num_channels,
        )
    for value in values:
        check_finite(field, value)
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0:
        raise InvalidInput(f"{field}: must not be all zeros", field=field)
    return tuple(v / norm for v in values)
