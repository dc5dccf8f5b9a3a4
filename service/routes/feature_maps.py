"""Feature maps of any layers, as a PNG panel, raw arrays or JSON."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.errors import ErrorBody
from api_schemas.feature_maps import FeatureMapResponse, LayerMapsInfo, OutputFormat, Reduce, Scale
from api_schemas.models import Fitting
from service.engine.channels import GRAMMAR
from service.engine.feature_maps import (
    OutputCaps,
    channel_ranges,
    check_output_size,
    plan_feature_maps,
)
from service.engine.images import upload_geometries
from service.engine.render import RenderOptions, check_colormap
from service.routes.deps import ActivationCacheDep, ImagesDep, ModelDep, PoolDep, SettingsDep
from service.workers.capture_flow import captured_layers
from service.workers.tasks import feature_map_answer

router = APIRouter(prefix="/v1/models", tags=["feature maps"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (404, 413, 415, 422)
}
_MEDIA: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "png: the panel; npy: float32 [B, k, H, W] for one layer; "
        "npz (application/zip): one array per layer name; json: metadata and the panel as base64",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/FeatureMapResponse"}},
        },
    }
}


def split_names(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@router.post("/{model}/feature-maps", responses={**_MEDIA, **_ERRORS}, response_model=None)
async def feature_maps(
    model: ModelDep,
    images: ImagesDep,
    pool: PoolDep,
    settings: SettingsDep,
    activations: ActivationCacheDep,
    layers: Annotated[
        str | None,
        Query(
            description="comma-separated layer names; default: the deepest spatial layer",
            max_length=4096,
        ),
    ] = None,
    channels: Annotated[str, Query(description=GRAMMAR, max_length=4096)] = "first:16",
    reduce: Annotated[
        Reduce, Query(description="how selected channels are combined")
    ] = Reduce.none,
    fmt: Annotated[OutputFormat, Query(alias="format")] = OutputFormat.png,
    colormap: Annotated[
        str, Query(description="a matplotlib colormap name", max_length=64)
    ] = "viridis",
    scale: Annotated[
        Scale, Query(description="min-max per tile or across the grid")
    ] = Scale.channel,
    columns: Annotated[int | None, Query(ge=1, le=256, description="tiles per grid row")] = None,
    upsample: Annotated[int | None, Query(ge=8, le=1024, description="tile size in pixels")] = None,
    overlay: Annotated[bool, Query(description="blend maps onto the input image")] = False,
    labels: Annotated[bool, Query(description="channel numbers on tiles")] = True,
) -> Response:
    """Capture layers in one forward pass and return their channels."""
    plan = plan_feature_maps(
        model, layers=split_names(layers), channels=channels, reduce=reduce.value
    )
    caps = OutputCaps(settings.max_layers, settings.max_tiles, settings.max_output_bytes)
    check_output_size(model, plan, images=len(images), fmt=fmt.value, tile=upsample, caps=caps)
    check_colormap(colormap)
    options = RenderOptions(
        colormap=colormap,
        scale=scale.value,
        columns=columns,
        upsample=upsample,
        overlay=overlay,
        labels=labels,
    )
    batch, outputs = await captured_layers(
        pool, activations, model, images, plan, max_pixels=settings.max_image_pixels
    )
    answer = await pool.cpu(
        feature_map_answer, model, batch, outputs, plan, fmt=fmt.value, options=options
    )
    if fmt is not OutputFormat.json:
        return Response(answer.body, media_type=answer.media_type)
    infos = []
    for layer in answer.maps.layers:
        low, high = channel_ranges(layer.values)
        infos.append(
            LayerMapsInfo(
                name=layer.name,
                layer_shape=list(layer.shape),
                shape=list(layer.values.shape),
                channels=layer.channels.tolist(),
                min=low.tolist(),
                max=high.tolist(),
            )
        )
    fits = await pool.cpu(upload_geometries, images, model.spec)
    body = FeatureMapResponse(
        model=model.name,
        reduce=reduce,
        batch=len(images),
        input_size=list(model.spec.input_size),
        fitting=[Fitting.model_validate(fit.to_dict()) for fit in fits],
        layers=infos,
        png_base64=base64.b64encode(answer.body).decode("ascii"),
    )
    return Response(body.model_dump_json(), media_type="application/json")
