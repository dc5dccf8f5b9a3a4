"""Validation shared by the insight computations: usable layers and channels.

Everything here raises `InvalidInput` (422) naming the argument, before any computation.
"""

from __future__ import annotations

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel


def activation_layer(model: LoadedModel, layer: str, *, field: str = "layer") -> LayerInfo:
    """A layer whose output is a [C, H, W] map or a [C] vector and that runs in forward.

    Raises:
        NotFound: unknown layer (with the closest names).
        InvalidInput: the layer's output cannot be addressed by channel.
    """
    info = model.catalog.get(layer, field=field)
    shape = info.output_shape
    if shape is None or len(shape) not in (1, 3) or info.calls == 0:
        suitable = [lay.name for lay in model.catalog.spatial_layers()][-10:]
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
