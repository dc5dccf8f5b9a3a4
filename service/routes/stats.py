"""Activation statistics per layer: sparsity, moments, dead channels."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.insight import LayerStatsBody, StatsFormat, StatsResponse
from service.engine.insight.stats import LayerStats, plan_stats
from service.routes.common import (
    DEVICE_ERRORS,
    IMAGE_ERRORS,
    MODEL_ERRORS,
    error_responses,
    split_names,
)
from service.routes.deps import ImagesDep, ModelDep, PoolDep, SettingsDep
from service.workers.tasks import stats_task

router = APIRouter(prefix="/v1/models", tags=["insight"])


def _layer_body(stats: LayerStats) -> LayerStatsBody:
    return LayerStatsBody(
        name=stats.name,
        type=stats.type,
        depth=stats.depth,
        shape=list(stats.shape),
        sparsity=stats.sparsity,
        mean=stats.mean,
        std=stats.std,
        max=stats.max,
        dead_fraction=stats.dead_fraction,
        channel_means=stats.channel_means.tolist(),
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
    layers: Annotated[
        str | None,
        Query(description="comma-separated layer names; default: every layer", max_length=8192),
    ] = None,
    fmt: Annotated[StatsFormat, Query(alias="format")] = StatsFormat.json,
) -> Response:
    """Per layer over the images: sparsity, mean, std, max, dead channels, channel means."""
    plan = plan_stats(model, split_names(layers))
    answer = await pool.run(
        stats_task, model, images, plan, fmt=fmt.value, max_pixels=settings.max_image_pixels
    )
    if fmt is StatsFormat.png:
        return Response(answer.body, media_type=answer.media_type)
    body = StatsResponse(
        model=model.name, images=len(images), layers=[_layer_body(s) for s in answer.result]
    )
    return Response(body.model_dump_json(), media_type="application/json")
