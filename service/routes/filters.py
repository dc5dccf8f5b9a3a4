"""A layer's convolution kernels, as the weight tensor or as a picture."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from api_schemas.feature_maps import Scale
from api_schemas.insight import FilterFormat, FilterView
from service.engine.channels import GRAMMAR
from service.engine.insight.filters import plan_filters
from service.engine.render import check_colormap
from service.routes.common import DEVICE_ERRORS, MODEL_ERRORS, error_responses
from service.routes.deps import ModelDep, PoolDep
from service.workers.tasks import filters_task

router = APIRouter(prefix="/v1/models", tags=["insight"])

LayerPath = Annotated[
    str, PathParam(description="a layer from GET /v1/models/{model}/layers", max_length=256)
]


@router.get(
    "/{model}/layers/{layer}/filters",
    response_model=None,
    responses={
        200: {
            "description": "npy: float32 [out, in, kh, kw], the selected filters exactly as "
            "stored; png: a grid of kernels",
            "content": {"image/png": {}, "application/x-npy": {}},
        },
        **error_responses(*MODEL_ERRORS, *DEVICE_ERRORS),
    },
)
async def filters(
    model: ModelDep,
    layer: LayerPath,
    pool: PoolDep,
    fmt: Annotated[FilterFormat, Query(alias="format")] = FilterFormat.png,
    channels: Annotated[
        str | None,
        Query(
            description=f"output channels: {GRAMMAR}; top:N ranks by kernel norm. "
            "Default: all for npy, first:64 for png",
            max_length=4096,
        ),
    ] = None,
    view: Annotated[
        FilterView,
        Query(
            description="rgb: colour patches (3 inputs); mean: mean over inputs; inputs: one "
            "tile per input; auto: rgb for 3 inputs, else mean",
        ),
    ] = FilterView.auto,
    inputs: Annotated[
        str, Query(description=f"input channels for view=inputs: {GRAMMAR}", max_length=4096)
    ] = "first:16",
    colormap: Annotated[
        str, Query(description="diverging matplotlib colormap for mean/inputs", max_length=64)
    ] = "RdBu_r",
    scale: Annotated[
        Scale, Query(description="largest |weight| per tile or across the grid")
    ] = Scale.channel,
    upsample: Annotated[int | None, Query(ge=4, le=512, description="tile size in pixels")] = None,
    columns: Annotated[int | None, Query(ge=1, le=256, description="tiles per row")] = None,
    labels: Annotated[bool, Query(description="filter numbers on tiles")] = True,
) -> Response:
    """The layer's weights: the kernel tensor (npy) or a grid of kernels (png)."""
    plan = plan_filters(
        model, layer=layer, channels=channels, view=view.value, inputs=inputs, fmt=fmt.value
    )
    check_colormap(colormap)
    render = {
        "colormap": colormap,
        "scale": scale.value,
        "upsample": upsample,
        "columns": columns,
        "labels": labels,
    }
    answer = await pool.run(filters_task, model, plan, fmt=fmt.value, render=render)
    return Response(answer.body, media_type=answer.media_type)
