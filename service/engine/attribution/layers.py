"""The layers an attribution can use: spatial ones, checked against the model's catalog.

Shared by the request plans and the methods that pick a layer (cam, guided-gradcam).
"""

from __future__ import annotations

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel

MAX_LAYERS = 8


def suitable_layers(model: LoadedModel) -> list[str]:
    """The last ten layers a CAM can use, for hints."""
    return [lay.name for lay in model.catalog.spatial_layers()][-10:]


def default_layer(model: LoadedModel) -> str:
    """The last spatial layer; for segmentation and detection models the last one of the
    backbone when there is one (after it come heads and proposals, whose maps explain less
    or, as a detector's region proposals, are cut from the graph)."""
    layers = model.catalog.spatial_layers()
    if model.spec.task != "classification":
        backbone = [lay for lay in layers if lay.name.startswith("backbone.")]
        layers = backbone or layers
    if not layers:
        raise LookupError(f"model {model.name!r} has no layer with a spatial output")
    return layers[-1].name


def check_spatial_layers(
    model: LoadedModel, names: list[str], *, field: str = "layer"
) -> list[LayerInfo]:
    """The layers (default: the last spatial one) in forward order; 404 unknown, 422 not spatial."""
    catalog = model.catalog
    try:
        names = list(dict.fromkeys(names)) or [default_layer(model)]
    except LookupError as exc:
        raise InvalidInput(
            f"{field}: model '{model.name}' has no layer with a spatial output", field=field
        ) from exc
    if len(names) > MAX_LAYERS:
        raise InvalidInput(
            f"{field}: {len(names)} layers, at most {MAX_LAYERS}",
            field=field,
            max_layers=MAX_LAYERS,
        )
    infos = [catalog.get(name, field=field) for name in names]
    for info in infos:
        if not info.spatial or info.calls == 0:
            suitable = suitable_layers(model)
            several = catalog.not_one_tensor(info)
            if several:
                raise InvalidInput(f"{field}: {several}", field=field, members=info.members)
            raise InvalidInput(
                f"{field}: '{info.name}' has no spatial output (output shape {info.output_shape}); "
                "a CAM needs a layer whose output reads as [C, H, W] with H x W > 1, such as "
                f"{', '.join(suitable)}",
                field=field,
                suitable=suitable,
            )
    return sorted(infos, key=lambda lay: lay.order)
