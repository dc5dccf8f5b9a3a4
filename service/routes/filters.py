"""A layer's convolution kernels, as the weight tensor or as a picture."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from model_registry.errors import NotFound
from model_registry.registry import LoadedModel
from service.engine.insight.filters import kernel_layers, plan_filters
from service.engine.render import check_colormap
from service.routes.common import (
    DEVICE_ERRORS,
    MODEL_ERRORS,
    LayerPath,
    error_responses,
    respond,
)
from service.routes.deps import ModelDep, PoolDep
from service.routes.options import FilterOptions
from service.workers.insight_tasks import filters_task

router = APIRouter(prefix="/v1/models", tags=["insight"])


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
    options: Annotated[FilterOptions, Query()],
) -> Response:
    """The layer's weights: the kernel tensor (npy) or a grid of kernels (png)."""
    _has_filters(model, layer)
    plan = plan_filters(model, layer=layer, **options.plan_args())
    check_colormap(options.colormap)
    render = options.answer_args()
    answer = await pool.run(filters_task, model, plan, fmt=options.fmt.value, render=render)
    return respond(answer)


def _has_filters(model: LoadedModel, layer: str) -> None:
    """A layer without convolution kernels has no filters resource: 404, naming those that do."""
    info = model.catalog.get(layer, field="layer")  # an unknown layer: 404 as well
    having = kernel_layers(model)
    if info.name not in having:
        raise NotFound(
            f"layer: '{info.name}' ({info.type}) has no convolution kernels; layers with kernels: "
            f"{', '.join(having[:20])}{' ...' if len(having) > 20 else ''}",
            field="layer",
            layers_with_weights=having,
        )
