"""Feature inversion: reconstruct an image from its features at one layer."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.insight import ImageFormat, InvertResponse
from model_registry.errors import InvalidInput
from service.engine.insight.cost import optimization_seconds
from service.engine.insight.invert import InvertPlan, InvertResult, plan_invert
from service.engine.insight.progress import Progress
from service.routes.deps import ImagesDep, ModelDep, PoolDep, SettingsDep
from service.routes.filters import LayerPath
from service.routes.jobs import JSON_MEDIA_TYPE, JobsDep, answer_or_job
from service.routes.maximize import IMAGE_ANSWERS, AsyncQuery
from service.workers.job_store import Encoded
from service.workers.tasks import invert_task

router = APIRouter(prefix="/v1/models", tags=["insight"])


def _body(model: str, plan: InvertPlan, answer_body: bytes, result: InvertResult) -> bytes:
    return (
        InvertResponse(
            model=model,
            layer=plan.layer,
            steps=plan.steps,
            lr=plan.lr,
            seed=plan.seed,
            tv=plan.tv,
            beta=plan.beta,
            norm=plan.norm,
            alpha=plan.alpha,
            loss=result.loss.tolist(),
            distance=result.distance.tolist(),
            distance_drop=result.distance_drop,
            png_base64=base64.b64encode(answer_body).decode("ascii"),
        )
        .model_dump_json()
        .encode()
    )


@router.post("/{model}/layers/{layer}/invert", response_model=None, responses=IMAGE_ANSWERS)
async def invert(
    model: ModelDep,
    layer: LayerPath,
    images: ImagesDep,
    pool: PoolDep,
    jobs: JobsDep,
    settings: SettingsDep,
    steps: Annotated[int, Query(ge=1, description="Adam steps (capped by the server)")] = 200,
    lr: Annotated[
        float, Query(gt=0, le=10, allow_inf_nan=False, description="Adam step size, pixel units")
    ] = 0.1,
    seed: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="seed of the noise the search starts from")
    ] = 0,
    tv: Annotated[
        float, Query(ge=0, allow_inf_nan=False, description="total-variation weight")
    ] = 0.5,
    beta: Annotated[
        float, Query(ge=1, le=8, allow_inf_nan=False, description="total-variation exponent")
    ] = 2.0,
    norm: Annotated[
        float, Query(ge=0, allow_inf_nan=False, description="alpha-norm weight")
    ] = 0.01,
    alpha: Annotated[
        float, Query(ge=1, le=16, allow_inf_nan=False, description="alpha-norm exponent")
    ] = 6.0,
    fmt: Annotated[ImageFormat, Query(alias="format")] = ImageFormat.png,
    run_async: AsyncQuery = None,
) -> Response:
    """Reconstruct the uploaded image from its features at `layer` (Mahendran & Vedaldi 2015)."""
    if len(images) != 1:
        raise InvalidInput(
            f"image: send exactly one image to invert, got {len(images)}", field="image"
        )
    plan = plan_invert(
        model,
        layer=layer,
        steps=steps,
        lr=lr,
        seed=seed,
        tv=tv,
        beta=beta,
        norm=norm,
        alpha=alpha,
        max_steps=settings.max_insight_steps,
    )
    upload = images[0]

    def work(progress: Progress) -> Encoded:
        answer = invert_task(
            model,
            upload,
            plan,
            fmt="npy" if fmt is ImageFormat.npy else "png",
            max_pixels=settings.max_image_pixels,
            progress=progress,
        )
        if fmt is ImageFormat.json:
            return Encoded(_body(model.name, plan, answer.body, answer.result), JSON_MEDIA_TYPE)
        return Encoded(answer.body, answer.media_type)

    estimate = optimization_seconds(
        model,
        layer=plan.layer,
        size=model.spec.input_size,
        steps=plan.steps,
        flops_per_second=settings.flops_per_second(model.device.type),
    )
    return await answer_or_job(
        model=model,
        kind="invert",
        work=work,
        total=plan.steps,
        estimate_s=estimate,
        run_async=run_async,
        pool=pool,
        jobs=jobs,
        settings=settings,
    )
