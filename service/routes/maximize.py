"""Activation maximization: the image a channel, neuron or direction responds to most."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.insight import MaximizeResponse
from service.engine.insight.cost import optimization_seconds
from service.engine.insight.maximize import MaximizePlan, MaximizeResult, plan_maximize
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.routes import common
from service.routes.deps import ServingDep
from service.routes.options import MaximizeOptions
from service.workers.insight_tasks import maximize_task

router = APIRouter(prefix="/v1/models", tags=["insight"])


def _body(model: str, plan: MaximizePlan, result: MaximizeResult, png: str) -> MaximizeResponse:
    return MaximizeResponse(
        model=model,
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
        png_base64=png,
    )


@router.post(
    "/{model}/layers/{layer}/maximize", response_model=None, responses=common.SYNTHESIS_ANSWERS
)
async def maximize(
    serving: ServingDep, layer: common.LayerPath, options: Annotated[MaximizeOptions, Query()]
) -> Response:
    """Optimize an image (Fourier parameterized, randomly transformed) to excite a channel."""
    model, settings = serving.model, serving.settings
    plan = await serving.pool.run(
        plan_maximize,
        model,
        layer=layer,
        **options.plan_args(),
        max_steps=settings.max_insight_steps,
        max_size=settings.max_insight_size,
    )
    fmt = options.fmt.value

    def work(progress: Progress) -> Encoded:
        answer = maximize_task(model, plan, fmt=common.picture_format(fmt), progress=progress)
        return common.encoded(fmt, answer, partial(_body, model.name, plan, answer.result))

    speed = settings.flops_per_second(model.device.type)
    estimate = optimization_seconds(
        model, layer=plan.layer, size=plan.size, steps=plan.steps, flops_per_second=speed
    )
    return await common.answer_or_job(
        serving,
        "maximize",
        work,
        total=plan.steps,
        estimate_s=estimate,
        run_async=options.run_async,
    )
