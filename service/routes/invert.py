"""Feature inversion: reconstruct an image from its features at one layer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.insight import InvertResponse
from model_registry.errors import InvalidInput
from service.engine.insight.cost import optimization_seconds
from service.engine.insight.invert import plan_invert
from service.engine.insight.progress import Progress
from service.routes.common import (
    DEVICE_ERRORS,
    IMAGE_ANSWERS,
    IMAGE_ERRORS,
    JOB_ACCEPTED,
    JOB_ERRORS,
    MODEL_ERRORS,
    LayerPath,
    answer_or_job,
    encoded,
    error_responses,
)
from service.routes.deps import ImagesDep, JobsDep, ModelDep, PoolDep, SettingsDep
from service.routes.options import InvertOptions
from service.workers.insight_tasks import invert_task
from service.workers.job_store import Encoded

router = APIRouter(prefix="/v1/models", tags=["insight"])

_ANSWERS = {
    **IMAGE_ANSWERS,
    **JOB_ACCEPTED,
    **error_responses(*MODEL_ERRORS, *IMAGE_ERRORS, *DEVICE_ERRORS, *JOB_ERRORS),
}


@router.post("/{model}/layers/{layer}/invert", response_model=None, responses=_ANSWERS)
async def invert(
    model: ModelDep,
    layer: LayerPath,
    images: ImagesDep,
    pool: PoolDep,
    jobs: JobsDep,
    settings: SettingsDep,
    options: Annotated[InvertOptions, Query()],
) -> Response:
    """Reconstruct the uploaded image from its features at `layer` (Mahendran & Vedaldi 2015)."""
    if len(images) != 1:
        raise InvalidInput(
            f"image: send exactly one image to invert, got {len(images)}", field="image"
        )
    plan = plan_invert(
        model, layer=layer, **options.plan_args(), max_steps=settings.max_insight_steps
    )
    upload, fmt = images[0], options.fmt.value

    def work(progress: Progress) -> Encoded:
        answer = invert_task(
            model,
            upload,
            plan,
            fmt="npy" if fmt == "npy" else "png",
            max_pixels=settings.max_image_pixels,
            progress=progress,
        )
        result = answer.result
        return encoded(
            fmt,
            answer.body,
            answer.media_type,
            lambda png_base64: InvertResponse(
                model=model.name,
                layer=plan.layer,
                **options.plan_args(),
                loss=result.loss.tolist(),
                distance=result.distance.tolist(),
                distance_drop=result.distance_drop,
                png_base64=png_base64,
            ),
        )

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
        run_async=options.run_async,
        pool=pool,
        jobs=jobs,
        settings=settings,
    )
