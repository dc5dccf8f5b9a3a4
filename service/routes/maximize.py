"""Activation maximization: the image a channel, neuron or direction responds to most."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.insight import ImageFormat, MaximizeResponse
from model_registry.errors import TooManyJobs, TooSlow
from service.engine.insight.cost import optimization_seconds
from service.engine.insight.maximize import DEFAULT_TV, MaximizePlan, MaximizeResult, plan_maximize
from service.engine.insight.progress import Progress
from service.routes.common import DEVICE_ERRORS, MODEL_ERRORS, error_responses
from service.routes.deps import ModelDep, PoolDep, SettingsDep
from service.routes.filters import LayerPath
from service.routes.jobs import JSON_MEDIA_TYPE, JobsDep, answer_or_job
from service.workers.job_store import Encoded
from service.workers.tasks import maximize_task

router = APIRouter(prefix="/v1/models", tags=["insight"])

IMAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "png: the image; npy: float32 [C, H, W] in [0, 1]; "
        "json: curve and base64 PNG",
        "content": {"image/png": {}, "application/x-npy": {}, "application/json": {}},
    },
    202: {"description": "accepted as a job; poll the Location header (GET /v1/jobs/{id})"},
    **error_responses(*MODEL_ERRORS, *DEVICE_ERRORS, TooSlow, TooManyJobs),
}
AsyncQuery = Annotated[
    bool | None,
    Query(
        alias="async",
        description="true: answer 202 and run as a job; false: answer directly; unset: a job "
        "when the estimated time exceeds the server's synchronous budget",
    ),
]


def _body(model: str, plan: MaximizePlan, answer_body: bytes, result: MaximizeResult) -> bytes:
    return (
        MaximizeResponse(
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
            png_base64=base64.b64encode(answer_body).decode("ascii"),
        )
        .model_dump_json()
        .encode()
    )


@router.post("/{model}/layers/{layer}/maximize", response_model=None, responses=IMAGE_ANSWERS)
async def maximize(
    model: ModelDep,
    layer: LayerPath,
    pool: PoolDep,
    jobs: JobsDep,
    settings: SettingsDep,
    channel: Annotated[int | None, Query(ge=0, description="the channel to excite")] = None,
    neuron: Annotated[
        str | None,
        Query(
            description="'x,y': one position of the channel's map instead of its mean",
            max_length=32,
        ),
    ] = None,
    direction: Annotated[
        str | None,
        Query(
            description="comma-separated weights, one per channel (instead of channel)",
            max_length=200_000,
        ),
    ] = None,
    steps: Annotated[int, Query(ge=1, description="Adam steps (capped by the server)")] = 256,
    lr: Annotated[
        float, Query(gt=0, le=10, allow_inf_nan=False, description="Adam step size")
    ] = 0.05,
    size: Annotated[
        int | None, Query(ge=8, description="image side in pixels; default: model input size")
    ] = None,
    seed: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="same seed, same image (on CPU)")
    ] = 0,
    tv: Annotated[
        float, Query(ge=0, allow_inf_nan=False, description="total-variation weight")
    ] = DEFAULT_TV,
    transforms: Annotated[
        bool, Query(description="random jitter, scale and rotation each step")
    ] = True,
    decorrelate: Annotated[
        bool, Query(description="optimize in a decorrelated colour space (RGB models)")
    ] = True,
    fmt: Annotated[ImageFormat, Query(alias="format")] = ImageFormat.png,
    run_async: AsyncQuery = None,
) -> Response:
    """Optimize an image (Fourier parameterized, randomly transformed) to excite a channel."""
    plan = await pool.run(
        plan_maximize,
        model,
        layer=layer,
        channel=channel,
        neuron=neuron,
        direction=direction,
        steps=steps,
        lr=lr,
        size=size,
        seed=seed,
        tv=tv,
        transforms=transforms,
        decorrelate=decorrelate,
        max_steps=settings.max_insight_steps,
        max_size=settings.max_insight_size,
    )

    def work(progress: Progress) -> Encoded:
        answer = maximize_task(
            model, plan, fmt="npy" if fmt is ImageFormat.npy else "png", progress=progress
        )
        if fmt is ImageFormat.json:
            return Encoded(_body(model.name, plan, answer.body, answer.result), JSON_MEDIA_TYPE)
        return Encoded(answer.body, answer.media_type)

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
        run_async=run_async,
        pool=pool,
        jobs=jobs,
        settings=settings,
    )
