"""Two models compared on one picture: both predictions and both class activation maps."""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, Field

from api_schemas.compare import ONE_NAME, TWO_NAMES
from api_schemas.predictions import PredictionItem
from model_registry.errors import ClientError, InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.pictures import Look
from service.engine.attribution.plan import CamPlan, plan_cam
from service.engine.compare.plan import pick_models
from service.engine.encode import NPY_MEDIA_TYPE as NPY
from service.engine.encode import PNG_MEDIA_TYPE as PNG
from service.engine.progress import Progress
from service.engine.render import check_colormap
from service.jobs.job_store import Encoded
from service.routes import common
from service.routes.attribution_options import CamMethod
from service.routes.deps import ImagesDep, JobsDep, PoolDep, RegistryDep, Serving, SettingsDep
from service.routes.options import colormap_field
from service.workers.compare_tasks import compare_pictures_task

router = APIRouter(prefix="/v1", tags=["compare"])


class PictureFormat(StrEnum):
    png = "png"
    npy = "npy"
    json = "json"


def _plus_signs(value: object) -> object:
    """A '+' sent unescaped in a query string arrives as a space (gradcam++)."""
    return value.replace(" ", "+") if isinstance(value, str) else value


class ComparePictureOptions(BaseModel):
    models: str = Field(
        description="the two models, comma-separated: a,b (GET /v1/models)",
        max_length=300,
        pattern=TWO_NAMES,
    )
    method: Annotated[CamMethod, BeforeValidator(_plus_signs)] = Field(  # type: ignore[valid-type]
        CamMethod("gradcam"), description="a /cam method (gradcam++ may be sent unescaped)"
    )
    layer_a: str | None = Field(
        None,
        description="one layer of the first model; default: its last spatial layer",
        max_length=256,
        pattern=ONE_NAME,
    )
    layer_b: str | None = Field(
        None,
        description="one layer of the second model; default: its last spatial layer",
        max_length=256,
        pattern=ONE_NAME,
    )
    fmt: PictureFormat = Field(PictureFormat.png, alias="format")
    colormap: str = colormap_field("jet")


class ComparePictureResponse(BaseModel):
    models: list[str]
    method: str
    layers: list[str] = Field(description="[layer_a, layer_b]")
    predictions: list[list[list[PredictionItem]]] = Field(
        description="per model, per picture, the top classes"
    )
    png_base64: str = Field(description="the two models' /cam pictures side by side")


def _plan(model: LoadedModel, method: str, layer: str | None, field: str) -> CamPlan:
    try:
        return plan_cam(model, method=method, layers=[layer] if layer else [])
    except ClientError as exc:  # the plan names `layers`: this endpoint calls it `field`
        if exc.field in ("layers", "layer"):
            exc.field = field
            exc.detail = exc.detail.replace("layers:", f"{field}:", 1)
        raise


@router.post(
    "/compare",
    response_model=None,
    responses=common.answers(
        "png: both /cam pictures side by side; npy: float32 [2, B, H, W], the two /cam "
        "answers stacked (models with one input size); json: predictions and the png",
        PNG,
        NPY,
        body=ComparePictureResponse,
        errors=(*common.MODEL_ERRORS, *common.IMAGE_ERRORS, *common.DEVICE_ERRORS),
    ),
)
async def compare_pictures(
    request: Request,
    registry: RegistryDep,
    pool: PoolDep,
    jobs: JobsDep,
    settings: SettingsDep,
    images: ImagesDep,
    options: Annotated[ComparePictureOptions, Query()],
) -> Response:
    """Both models' predictions and class activation maps for the same picture(s)."""
    model_a, model_b = pick_models(registry, common.split_names(options.models))
    method = str(getattr(options.method, "value", options.method))
    plans = (
        _plan(model_a, method, options.layer_a, "layer_a"),
        _plan(model_b, method, options.layer_b, "layer_b"),
    )
    fmt = options.fmt.value
    if fmt == "npy" and model_a.spec.input_size != model_b.spec.input_size:
        raise InvalidInput(
            f"format: npy stacks maps of one shape; '{model_a.name}' takes "
            f"{list(model_a.spec.input_size)} and '{model_b.name}' {list(model_b.spec.input_size)}"
            "; ask for png or json",
            field="format",
        )
    check_colormap(options.colormap)
    look = Look(colormap=options.colormap)
    pixels = settings.max_image_pixels

    def work(_progress: Progress) -> Encoded:
        both = compare_pictures_task(
            (model_a, model_b), images, plans, fmt=fmt, look=look, max_pixels=pixels
        )
        if fmt != "json":
            return Encoded(both.body, both.media_type)
        body = ComparePictureResponse(
            models=[model_a.name, model_b.name],
            method=method,
            layers=[plans[0].layers[0], plans[1].layers[0]],
            predictions=[
                [[PredictionItem(**vars(p)) for p in row] for row in result.predictions]
                for result in both.result
            ],
            png_base64=base64.b64encode(both.body).decode("ascii"),
        )
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    serving = Serving(model_a, pool, jobs, settings, request)
    return await common.answer_or_job(
        serving, "compare", work, total=1, estimate_s=0.0, run_async=False
    )
