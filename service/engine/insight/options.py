"""Validation shared by the insight computations: finite floats, caps and usable layers.

Everything here raises `InvalidInput` (422) naming the argument, before any computation.
"""

from __future__ import annotations

import math

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.layout import CHANNELS_FIRST, VECTOR
from model_registry.registry import LoadedModel


def check_finite(
    field: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    strict_low: bool = False,
) -> float:
    """`value` as a float, or a 422 when it is NaN, infinite or outside [low, high]."""
    value = float(value)
    if not math.isfinite(value):
        raise InvalidInput(f"{field}: must be a finite number, got {value}", field=field)
    if low is not None and (value <= low if strict_low else value < low):
        relation = ">" if strict_low else ">="
        raise InvalidInput(
            f"{field}: must be {relation} {low}, got {value}", field=field, valid_range=[low, high]
        )
    if high is not None and value > high:
        raise InvalidInput(
            f"{field}: must be <= {high}, got {value}", field=field, valid_range=[low, high]
        )
    return value


def check_cap(field: str, value: int, cap: int, *, low: int = 1, setting: str | None = None) -> int:
    """An integer option within [low, cap]; the message names the setting that raises the cap."""
    if value < low or value > cap:
        hint = f" (server setting LAYERSCOPE_{setting.upper()})" if setting else ""
        raise InvalidInput(
            f"{field}: {value} is outside the allowed range {low}-{cap}{hint}",
            field=field,
            valid_range=[low, cap],
        )
    return value


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
        raise InvalidInput(
            f"{field}: channel {channel} is out of range for layer '{layer}', which has "
            f"{num_channels} channels (valid: 0-{num_channels - 1})",
            field=field,
            layer=layer,
            valid_range=[0, num_channels - 1],
        )
    return channel
