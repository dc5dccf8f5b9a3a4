"""Feature inversion: reconstruct an image from its features at one layer."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.insight import InvertResponse
from model_registry.errors import InvalidInput
from service.engine.insight.cost import optimization_seconds
from service.engine.insight.invert import InvertResult, plan_invert
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.routes import common
from service.routes.deps import ImagesDep, ServingDep
from service.routes.options import InvertOptions
from service.workers.insight_tasks import invert_task

router = APIRouter(prefix="/v1/models", tags=["insight"])


def _body(
    model: str, layer: str, options: InvertOptions, result: InvertResult, png: str
) -> InvertResponse:
    """The JSON answer: the layer, the options as given, the loss and distance curves."""
    return InvertResponse(
        model=model,
        layer=layer,
        **options.plan_args(),
        loss=result.loss.tolist(),
        distance=result.distance.tolist(),
        distance_drop=result.distance_drop,
        png_base64=png,
    )


@router.post(
    "/{model}/layers/{layer}/invert",
    response_model=None,
    responses={**common.SYNTHESIS_ANSWERS, **common.error_responses(*common.IMAGE_ERRORS)},
)
async def invert(
    serving: ServingDep,
    layer: common.LayerPath,
    images: ImagesDep,
    options: Annotated[InvertOptions, Query()],
) -> Response:
    """Reconstruct the uploaded image from its features at `layer` (Mahendran & Vedaldi 2015)."""
    model, settings = serving.model, serving.settings
    if len(images) != 1:
        raise InvalidInput(
            f"image: send exactly one image to invert, got {len(images)}", field="image"
        )
    plan = plan_invert(
        model, layer=layer, **options.plan_args(), max_steps=settings.max_insight_steps
    )
    upload, fmt = images[0], options.fmt.value

    def work(progress: Progress) -> Encoded:
        picture = common.picture_format(fmt)
        pixels = settings.max_image_pixels
        answer = invert_task(model, upload, plan, fmt=picture, max_pixels=pixels, progress=progress)
        return common.encoded(
            fmt, answer, partial(_body, model.name, plan.layer, options, answer.result)
        )

    speed = settings.flops_per_second(model.device.type)
    size = model.spec.input_size
    estimate = optimization_seconds(
        model, layer=plan.layer, size=size, steps=plan.steps, flops_per_second=speed
    )
    return await common.answer_or_job(
        serving, "invert", work, total=plan.steps, estimate_s=estimate, run_async=options.run_async
    )
