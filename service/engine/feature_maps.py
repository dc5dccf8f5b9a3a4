"""Feature maps: validate a request against the catalog, capture, select, reduce, render."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model_registry.errors import InvalidInput, PayloadTooLarge
from model_registry.layout import MapLayout, to_maps
from model_registry.registry import LoadedModel
from service.engine.capture import capture
from service.engine.channels import (
    ChannelSelection,
    check_channels,
    parse_channels,
    select_channels,
)
from service.engine.charts import bar_chart, colorbar
from service.engine.reduce import check_reduce, reduce_channels
from service.engine.render import (
    RenderOptions,
    grid,
    input_picture,
    map_tiles,
    panel,
    tile_size,
)
from service.engine.upload_view import UploadView, overlay_tiles

MAX_INPUT_DISPLAY = 320
MIN_INPUT_DISPLAY = 128


@dataclass(frozen=True)
class FeatureMapPlan:
    """A validated request: layers in order of execution, a channel selection, a reduction."""

    layers: tuple[str, ...]
    selection: ChannelSelection
    reduce: str


@dataclass(frozen=True)
class LayerMaps:
    """One layer's result.

    Attributes:
        name: the layer.
        shape: the layer's output as maps, [C, H, W] (vectors are [C, 1, 1]).
        values: float32 [B, k, H, W] as computed, or reduced ([B, 3|1, H, W]).
        channels: int64 [B, k], the channels selected for each image.
    """

    name: str
    shape: tuple[int, int, int]
    values: np.ndarray
    channels: np.ndarray


@dataclass(frozen=True)
class FeatureMaps:
    layers: tuple[LayerMaps, ...]
    inputs: np.ndarray  # uint8 [B, H, W, 3], the de-normalized model input
    reduce: str


def plan_feature_maps(
    model: LoadedModel, *, layers: list[str], channels: str, reduce: str
) -> FeatureMapPlan:
    """Check every option against the catalog before any computation.

    An empty `layers` means the deepest layer with a spatial output.
    """
    catalog = model.catalog
    names = list(dict.fromkeys(layers)) or [catalog.last_spatial_layer().name]
    infos = [catalog.get(name, field="layers") for name in names]
    selection = parse_channels(channels)
    for info in infos:
        shape = info.spatial_shape
        if shape is None or info.calls == 0:
            suitable = [lay.name for lay in catalog.spatial_layers()][-10:]
            several = catalog.not_one_tensor(info)
            if several:
                raise InvalidInput(f"layers: {several}", field="layers", members=info.members)
            raise InvalidInput(
                f"layers: '{info.name}' has no map-like output (output shape {info.output_shape}); "
                f"pick a layer with a [C, H, W] output such as {', '.join(suitable)}",
                field="layers",
                suitable=suitable,
            )
        check_channels(selection, shape[0], layer=info.name)
        check_reduce(
            reduce,
            selected=selection.size(shape[0]),
            positions=shape[1] * shape[2],
            layer=info.name,
        )
    ordered = sorted(infos, key=lambda lay: lay.order)
    return FeatureMapPlan(tuple(info.name for info in ordered), selection, reduce)


@dataclass(frozen=True)
class OutputCaps:
    """Upper bounds checked from the catalog before any computation."""

    max_layers: int = 16
    max_tiles: int = 4096
    max_output_bytes: int = 256 * 1024 * 1024


def check_output_size(
    model: LoadedModel,
    plan: FeatureMapPlan,
    *,
    images: int,
    fmt: str,
    tile: int | None,
    caps: OutputCaps,
) -> None:
    """Refuse answers over the caps (413) using catalog shapes, before the forward pass."""
    if len(plan.layers) > caps.max_layers:
        raise InvalidInput(
            f"layers: {len(plan.layers)} layers requested, the limit is {caps.max_layers}",
            field="layers",
            max_layers=caps.max_layers,
        )
    array_bytes = tiles = pixels = 0
    for name in plan.layers:
        shape = model.catalog.get(name).spatial_shape
        if shape is None:  # plan_feature_maps refuses such layers
            raise InvalidInput(f"layers: '{name}' has no map-like output", field="layers")
        channels, height, width = shape
        kept = plan.selection.size(channels)
        shown = {"none": kept, "pca": 3}.get(plan.reduce, 1)
        array_bytes += 4 * images * shown * height * width
        count = images * (1 if plan.reduce != "none" else kept)
        tiles += count
        side = tile or max(64, height, width)
        pixels += count * side * side
    if fmt != "npy" and tiles > caps.max_tiles:
        raise PayloadTooLarge(
            f"the picture would have {tiles} tiles, the limit is {caps.max_tiles}; select fewer "
            "channels, "
            "layers or images, or ask for format=npy",
            field="channels",
            max_tiles=caps.max_tiles,
        )
    estimate = array_bytes if fmt == "npy" else 3 * pixels
    if estimate > caps.max_output_bytes:
        raise PayloadTooLarge(
            f"the answer would be about {estimate} bytes, the limit is {caps.max_output_bytes}; "
            "select fewer channels, layers or images",
            field="channels",
            max_output_bytes=caps.max_output_bytes,
        )


def _as_maps(output: np.ndarray, layout: MapLayout | None = None) -> np.ndarray:
    """[B, C, H, W] from a layer output; the catalog's `layout` reads tokens and channels-last."""
    if layout is not None:
        return to_maps(output, layout)
    return output[:, :, None, None] if output.ndim == 2 else output


def capture_calls(model: LoadedModel, plan: FeatureMapPlan) -> dict[str, int]:
    """Layer -> calls per forward pass: what `capture` needs to keep the right output."""
    return {name: model.catalog.get(name).calls for name in plan.layers}


def maps_from_outputs(
    model: LoadedModel,
    outputs: dict[str, np.ndarray],
    plan: FeatureMapPlan,
    *,
    inputs: np.ndarray,
) -> FeatureMaps:
    """Select and reduce channels of captured outputs, read as maps by the catalog's layout.

    numpy only: it runs in the CPU pool with the rendering, so a repeated view of a cached
    image never waits for the device thread."""
    results = []
    for name in plan.layers:
        maps = _as_maps(outputs[name], model.catalog.get(name).map_layout).astype(
            np.float32, copy=False
        )
        selected, index = select_channels(maps, plan.selection)
        values = reduce_channels(selected, plan.reduce)
        _, channels, height, width = maps.shape
        results.append(
            LayerMaps(
                name=name,
                shape=(channels, height, width),
                values=np.ascontiguousarray(values, dtype=np.float32),
                channels=index.astype(np.int64),
            )
        )
    return FeatureMaps(tuple(results), inputs, plan.reduce)


def compute_feature_maps(
    model: LoadedModel, batch: torch.Tensor, plan: FeatureMapPlan, *, inputs: np.ndarray
) -> FeatureMaps:
    """One forward pass (stopped after the deepest requested layer) serves every layer."""
    outputs = capture(model.module, batch, capture_calls(model, plan))
    arrays = {name: out.detach().float().cpu().numpy() for name, out in outputs.items()}
    return maps_from_outputs(model, arrays, plan, inputs=inputs)


def is_vector(layer: LayerMaps, reduce: str) -> bool:
    """True when the layer's maps are single values (a 1x1 map or a linear output): these are
    drawn as one sorted bar chart, since 1x1 tiles each scaled to their own range look flat."""
    return reduce == "none" and layer.shape[1:] == (1, 1)


def layer_picture(
    layer: LayerMaps,
    image: int,
    *,
    reduce: str,
    background: np.ndarray,
    options: RenderOptions,
    view: UploadView | None = None,
) -> np.ndarray:
    """One layer's grid for one image, with a colorbar beneath when `options.labels`; a
    vector as a sorted bar chart."""
    maps = layer.values[image]
    if is_vector(layer, reduce):
        return bar_chart(maps[:, 0, 0], [str(c) for c in layer.channels[image]])
    if options.overlay and view is not None:
        tiles = overlay_tiles(maps, view, rgb=reduce == "pca", options=options)
    else:
        tiles = map_tiles(maps, rgb=reduce == "pca", background=background, options=options)
    if reduce == "none":
        labels = [str(c) for c in layer.channels[image]] if options.labels else None
    else:
        labels = [f"{reduce} of {layer.channels.shape[1]}"] if options.labels else None
    picture = grid(tiles, columns=options.columns, labels=labels)
    if not options.labels or reduce == "pca":
        return picture
    low, high = float(maps.min()), float(maps.max())
    per_tile = options.scale == "channel" and maps.shape[0] > 1
    bar = colorbar(
        low,
        high,
        colormap=options.colormap,
        width=picture.shape[1],
        ends=("tile min", "tile max") if per_tile else None,
    )
    gap = np.full((4, picture.shape[1], 3), 255, np.uint8)
    return np.concatenate([picture, gap, bar])


def render_feature_maps(
    result: FeatureMaps, options: RenderOptions, views: Sequence[UploadView] = ()
) -> np.ndarray:
    """The panel: per image, the input on the left and each layer's grid beside it. With
    `views` (overlays on the uploads' geometry), the uploads stand in for the model input."""
    rows = []
    for image in range(result.inputs.shape[0]):
        view = views[image] if views else None
        pictures = [
            (
                f"{layer.name} [{', '.join(str(s) for s in layer.shape)}]",
                layer_picture(
                    layer,
                    image,
                    reduce=result.reduce,
                    background=result.inputs[image],
                    options=options,
                    view=view,
                ),
            )
            for layer in result.layers
        ]
        side = min(MAX_INPUT_DISPLAY, max(MIN_INPUT_DISPLAY, max(p.shape[0] for _, p in pictures)))
        if view is None:
            shown = input_picture(result.inputs[image], longer_side=input_side(side, result))
        else:
            source_h, source_w = view.geometry.source_size
            resized = view.resized(tile_size(source_h, source_w, side))
            shown = resized.faded(resized.picture)
        rows.append([("input", shown), *pictures])
    return panel(rows)


def input_side(side: int, result: FeatureMaps) -> int:
    """The input is drawn as tall as the grids (`side`), but a picture of at least
    `MIN_INPUT_DISPLAY` px is never enlarged: a 224 px photo blown up to 320 px adds no
    detail, and it was three quarters of the bytes of a 32-tile PNG view and of its deflate
    time. Smaller pictures (digits) are still enlarged, with nearest neighbour."""
    own = max(result.inputs.shape[1:3])
    return side if own < MIN_INPUT_DISPLAY else min(side, own)


def channel_ranges(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image and map: (min, max), each [B, k]."""
    return values.min(axis=(2, 3)), values.max(axis=(2, 3))
