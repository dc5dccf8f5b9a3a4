"""Activation statistics per layer: sparsity, moments, dead channels."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.insight import Histogram, LayerStatsBody, StatsResponse
from service.engine.insight.stats import LayerStats, plan_stats
from service.routes.common import (
    DEVICE_ERRORS,
    IMAGE_ERRORS,
    MODEL_ERRORS,
    encoded,
    error_responses,
    respond,
)
from service.routes.deps import ImagesDep, ModelDep, PoolDep, SettingsDep
from service.routes.options import StatsOptions
from service.workers.insight_tasks import stats_task

router = APIRouter(prefix="/v1/models", tags=["insight"])


def _layer_body(stats: LayerStats) -> LayerStatsBody:
    """The JSON of one layer: the engine's fields as they are, arrays as lists."""
    edges, counts = stats.histogram
    return LayerStatsBody(
        **{
            **vars(stats),
            "channel_means": stats.channel_means.tolist(),
            "histogram": Histogram(edges=edges.tolist(), counts=counts.tolist()),
        }
    )


@router.post(
    "/{model}/stats",
    response_model=StatsResponse,
    responses={
        200: {"content": {"application/json": {}, "image/png": {}}},
        **error_responses(*MODEL_ERRORS, *IMAGE_ERRORS, *DEVICE_ERRORS),
    },
)
async def stats(
    model: ModelDep,
    images: ImagesDep,
    pool: PoolDep,
    settings: SettingsDep,
    options: Annotated[StatsOptions, Query()],
) -> Response:
    """Per layer over the images: sparsity, mean, std, max, dead channels, channel means."""
    plan = plan_stats(model, **options.plan_args())
    fmt = options.fmt.value
    answer = await pool.run(
        stats_task, model, images, plan, fmt=fmt, max_pixels=settings.max_image_pixels
    )
    body = StatsResponse(
        model=model.name, images=len(images), layers=[_layer_body(s) for s in answer.result]
    )
    return respond(encoded(fmt, answer, lambda _png: body))
