"""Convolution kernels as data (the weight tensor) and as pictures.

First-layer kernels over RGB inputs are shown as colour patches; kernels over many input
channels are shown as their mean over inputs, or one tile per input channel, through a
diverging colormap centred on zero (negative and positive weights look different, zero is
the colormap's middle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.channels import (
    ChannelSelection,
    check_channels,
    parse_channels,
    select_channels,
)
from service.engine.insight.draw import titled
from service.engine.render import colormap_lut, grid

VIEWS = ("auto", "rgb", "mean", "inputs")
MIN_KERNEL_TILE = 32
DEFAULT_PNG_CHANNELS = "first:64"


@dataclass(frozen=True)
class FilterPlan:
    """A validated request.

    Attributes:
        layer: a layer with convolution kernels.
        selection: which output channels (filters).
        view: 'rgb', 'mean' or 'inputs' ('auto' is resolved here).
        inputs: input channels shown per filter in the 'inputs' view.
    """

    layer: str
    selection: ChannelSelection
    view: str
    inputs: ChannelSelection


@dataclass(frozen=True)
class Filters:
    """Selected kernels of one layer.

    Attributes:
        layer: the layer name.
        shape: the full weight shape [out, in, kh, kw].
        weight: float32 [k, in, kh, kw], the selected filters exactly as stored.
        channels: int64 [k], their output-channel indices.
    """

    layer: str
    shape: tuple[int, int, int, int]
    weight: np.ndarray
    channels: np.ndarray


def _kernel_weight(module: nn.Module) -> torch.Tensor | None:
    """The [out, in/groups, kh, kw] weight of a (non-transposed) 2-D convolution, else None."""
    weight = getattr(module, "weight", None)
    if (
        not isinstance(weight, torch.Tensor)
        or weight.ndim != 4
        or getattr(module, "transposed", False)
    ):
        return None
    return weight


def kernel_layers(model: LoadedModel) -> list[str]:
    """Layers whose weight is a 2-D convolution kernel, in forward order."""
    modules = dict(model.module.named_modules())
    layers = [
        info
        for info in model.catalog
        if info.name in modules and _kernel_weight(modules[info.name]) is not None
    ]
    return [info.name for info in sorted(layers, key=lambda lay: (lay.order < 0, lay.order))]


def plan_filters(
    model: LoadedModel,
    *,
    layer: str,
    channels: str | None,
    view: str = "auto",
    inputs: str = "first:16",
    fmt: str = "png",
) -> FilterPlan:
    """Check the layer has kernels and the channel selections fit them.

    `channels=None` means every filter for npy (the weight tensor as stored) and
    `first:64` for a picture.
    """
    info = model.catalog.get(layer, field="layer")
    weight = _kernel_weight(model.module.get_submodule(info.module_name))
    if weight is None:
        having = kernel_layers(model)
        raise InvalidInput(
            f"layer: '{info.name}' ({info.type}) has no convolution kernels; layers with kernels: "
            f"{', '.join(having[:20])}{' ...' if len(having) > 20 else ''}",
            field="layer",
            layers_with_weights=having,
        )
    out_channels, in_channels = weight.shape[:2]
    text = channels if channels is not None else ("all" if fmt == "npy" else DEFAULT_PNG_CHANNELS)
    selection = parse_channels(text)
    check_channels(selection, out_channels, layer=info.name)
    input_selection = parse_channels(inputs, field="inputs")
    check_channels(input_selection, in_channels, layer=info.name, field="inputs")
    if view not in VIEWS:
        raise InvalidInput(
            f"view: '{view}' is not one of {', '.join(VIEWS)}", field="view", choices=list(VIEWS)
        )
    if view == "auto":
        view = "rgb" if in_channels == 3 else "mean"
    if view == "rgb" and in_channels != 3:
        raise InvalidInput(
            f"view: 'rgb' needs kernels over 3 input channels; '{info.name}' has "
            f"{in_channels}; use mean or inputs",
            field="view",
        )
    return FilterPlan(info.name, selection, view, input_selection)


def _pick(weight: torch.Tensor, selection: ChannelSelection) -> torch.Tensor:
    """Indices chosen by a channel selection; `top:N` ranks by L2 norm of the kernel."""
    norms = weight.reshape(weight.shape[0], -1).norm(dim=1).numpy()
    _, index = select_channels(norms[None, :, None, None], selection)
    return torch.from_numpy(np.array(index[0], dtype=np.int64))  # a writable copy


def get_filters(model: LoadedModel, plan: FilterPlan) -> Filters:
    """A detached float32 CPU copy of the selected filters."""
    weight = _kernel_weight(model.module.get_submodule(model.catalog.get(plan.layer).module_name))
    assert weight is not None  # checked by plan_filters
    weight = weight.detach().float().cpu()
    index = _pick(weight, plan.selection)
    shape = tuple(int(s) for s in weight.shape)
    return Filters(
        layer=plan.layer,
        shape=(shape[0], shape[1], shape[2], shape[3]),
        weight=weight.index_select(0, index).numpy().copy(),
        channels=index.numpy().astype(np.int64),
    )


def _upscale(tiles: np.ndarray, tile: int) -> np.ndarray:
    """Nearest-neighbour enlargement of [n, h, w, ...] kernels by an integer factor."""
    factor = max(1, math.ceil(tile / max(tiles.shape[1], tiles.shape[2])))
    return tiles.repeat(factor, axis=1).repeat(factor, axis=2)


def _symmetric_unit(values: np.ndarray, scale: str, axes: tuple[int, ...]) -> np.ndarray:
    """Map weights to [0, 1] with 0 -> 0.5, by the largest |w| per tile or over everything."""
    reach = np.abs(values).max(axis=axes if scale == "channel" else None, keepdims=True)
    return 0.5 + 0.5 * values / np.where(reach > 0, reach, 1.0)


def render_filters(
    filters: Filters,
    plan: FilterPlan,
    *,
    colormap: str = "RdBu_r",
    scale: str = "channel",
    upsample: int | None = None,
    columns: int | None = None,
    labels: bool = True,
) -> np.ndarray:
    """The kernels as one titled uint8 picture [H, W, 3]."""
    weight = filters.weight
    kernel = max(weight.shape[2], weight.shape[3])
    tile = upsample or max(MIN_KERNEL_TILE, 8 * kernel)
    names = [str(int(c)) for c in filters.channels] if labels else None
    if plan.view == "rgb":
        unit = _symmetric_unit(weight, scale, (1, 2, 3)).transpose(0, 2, 3, 1)
        tiles = np.clip(np.round(unit * 255), 0, 255).astype(np.uint8)
        picture = grid(_upscale(tiles, tile), columns=columns, labels=names)
        what = "RGB kernels, 0 = grey"
    elif plan.view == "mean":
        unit = _symmetric_unit(weight.mean(axis=1), scale, (1, 2))
        tiles = colormap_lut(colormap)[np.clip(np.round(unit * 255), 0, 255).astype(np.uint8)]
        picture = grid(_upscale(tiles, tile), columns=columns, labels=names)
        over = f"mean over {weight.shape[1]} inputs" if weight.shape[1] > 1 else "one input"
        what = f"{over}, {colormap} centred on 0"
    else:
        chosen = _pick(torch.from_numpy(weight).transpose(0, 1).contiguous(), plan.inputs).numpy()
        per_input = weight[:, chosen]  # [k, m, kh, kw]
        unit = _symmetric_unit(per_input, scale, (2, 3))
        lut = colormap_lut(colormap)
        strips = []
        for row in unit:
            tiles = lut[np.clip(np.round(row * 255), 0, 255).astype(np.uint8)]
            strips.append(grid(_upscale(tiles, tile), columns=len(chosen)))
        picture = grid(np.stack(strips), columns=columns or 1, labels=names)
        shown = ", ".join(str(int(c)) for c in chosen[:8]) + (" ..." if len(chosen) > 8 else "")
        what = f"one row per filter, inputs {shown}"
    title = f"{filters.layer} weight {list(filters.shape)}: {len(filters.channels)} filters, {what}"
    return titled(title, picture)
