"""Activation maximization: the image a channel, neuron or direction responds to most."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.insight import MaximizeResponse
from service.engine.insight.cost import optimization_seconds
from service.engine.insight.maximize import plan_maximize
from service.engine.insight.progress import Progress
from service.routes.common import (
    DEVICE_ERRORS,
    IMAGE_ANSWERS,
    JOB_ACCEPTED,
    JOB_ERRORS,
    MODEL_ERRORS,
    LayerPath,
    answer_or_job,
    encoded,
    error_responses,
)
from service.routes.deps import JobsDep, ModelDep, PoolDep, SettingsDep
from service.routes.options import MaximizeOptions
from service.workers.insight_tasks import maximize_task
from service.workers.job_store import Encoded

router = APIRouter(prefix="/v1/models", tags=["insight"])

_ANSWERS = {
    **IMAGE_ANSWERS,
    **JOB_ACCEPTED,
    **error_responses(*MODEL_ERRORS, *DEVICE_ERRORS, *JOB_ERRORS),
}


@router.post("/{model}/layers/{layer}/maximize", response_model=None, responses=_ANSWERS)
async def maximize(
    model: ModelDep,
    layer: LayerPath,
    pool: PoolDep,
    jobs: JobsDep,
    settings: SettingsDep,
    options: Annotated[MaximizeOptions, Query()],
) -> Response:
    """Optimize an image (Fourier parameterized, randomly transformed) to excite a channel."""
    plan = await pool.run(
        plan_maximize,
        model,
        layer=layer,
        **options.plan_args(),
        max_steps=settings.max_insight_steps,
        max_size=settings.max_insight_size,
    )
    fmt = options.fmt.value

    def work(progress: Progress) -> Encoded:
        answer = maximize_task(model, plan, fmt="npy" if fmt == "npy" else "png", progress=progress)
        result = answer.result
        return encoded(
            fmt,
            answer.body,
            answer.media_type,
            lambda png_base64: MaximizeResponse(
                model=model.name,
                layer=plan.layer,
                target=plan.target(),
                channel=plan.channel,
                neuron=list(plan.neuron) if plan.neuron else None,
                direction=plan.direction is not None,
                steps=plan.steps,
                lr=plan.lr,
                size=list(plan.size),
                seed=plan.seed,
                tv=plan.tv,
                activation=result.activation,
                noise_activation=result.noise_activation,
                curve=result.curve.tolist(),
                png_base64=png_base64,
            ),
        )

    estimate = optimization_seconds(
        model,
        layer=plan.layer,
        size=plan.size,
        steps=plan.steps,
        flops_per_second=settings.flops_per_second(model.device.type),
    )
    return await answer_or_job(
        model=model,
        kind="maximize",
        work=work,
        total=plan.steps,
        estimate_s=estimate,
        run_async=options.run_async,
        pool=pool,
        jobs=jobs,
        settings=settings,
    )
