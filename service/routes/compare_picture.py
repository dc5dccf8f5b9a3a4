"""Two models compared on one picture: both predictions and both explanations, by any /cam
or /attributions method."""

from __future__ import annotations

import base64
import re
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, Field

from api_schemas.attributions import GradientView, method_enum
from api_schemas.compare import ONE_NAME, TWO_NAMES
from api_schemas.predictions import PredictionItem
from model_registry.errors import ClientError, InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.input_attributions import InputPlan, plan_input_attributions
from service.engine.attribution.methods.registry import cam_methods, input_methods
from service.engine.attribution.pictures import Look
from service.engine.attribution.plan import CamPlan, plan_cam
from service.engine.checks import check_finite
from service.engine.compare.plan import pick_models
from service.engine.encode import NPY_MEDIA_TYPE as NPY
from service.engine.encode import PNG_MEDIA_TYPE as PNG
from service.engine.progress import Progress
from service.engine.render import check_colormap
from service.jobs.job_store import Encoded
from service.routes import common
from service.routes.deps import ImagesDep, JobsDep, PoolDep, RegistryDep, Serving, SettingsDep
from service.routes.input_attribution_options import InputMethodParameters
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


CAMS = frozenset(m.name for m in cam_methods())
CompareMethod = method_enum("CompareMethod", [*sorted(CAMS), *(m.name for m in input_methods())])
# The defaults of /cam and of /attributions, so that each side equals its own answer.
LOOKS = {True: Look(colormap="jet", alpha=0.5), False: Look(colormap="inferno", alpha=0.6)}


class ComparePictureOptions(InputMethodParameters):
    models: str = Field(
        description="the two models, comma-separated: a,b (GET /v1/models)",
        max_length=300,
        pattern=TWO_NAMES,
    )
    method: Annotated[CompareMethod, BeforeValidator(_plus_signs)] = Field(  # type: ignore[valid-type]
        CompareMethod("gradcam"),
        description="a /cam method (gradcam++ may be sent unescaped) or an /attributions "
        "method, with that method's parameters (GET /v1/methods)",
    )
    layer_a: str | None = Field(
        None,
        description="one layer of the first model (a CAM's layer, guided-gradcam's Grad-CAM "
        "layer); default: its last spatial layer",
        max_length=256,
        pattern=ONE_NAME,
    )
    layer_b: str | None = Field(
        None,
        description="one layer of the second model, as layer_a",
        max_length=256,
        pattern=ONE_NAME,
    )
    fmt: PictureFormat = Field(PictureFormat.png, alias="format")
    colormap: str | None = colormap_field(
        None, "a matplotlib colormap name; default: jet for a CAM, inferno for an attribution"
    )
    alpha: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="weight of the heatmap over the input; default: 0.5 for a CAM, 0.6 for "
        "an attribution",
    )
    view: GradientView = Field(
        GradientView.heatmap,
        description="attributions: the png view (as /attributions); npy reduces the input's "
        "channels as it draws them: the max of |map| (heatmap, gradient), of the positive "
        "or of the negative part",
    )


class ComparePictureResponse(BaseModel):
    models: list[str]
    method: str
    layers: list[str | None] = Field(
        description="[layer_a, layer_b]; null for an attribution to the input pixels"
    )
    predictions: list[list[list[PredictionItem]]] = Field(
        description="per model, per picture, the top classes"
    )
    png_base64: str = Field(
        description="the two models' /cam or /attributions pictures side by side"
    )


def _plan(
    model: LoadedModel, options: ComparePictureOptions, layer: str | None, field: str
) -> CamPlan | InputPlan:
    method = str(getattr(options.method, "value", options.method))
    given = options.method_parameters()
    try:
        if method not in CAMS:
            given |= {"layer": layer} if layer else {}
            return plan_input_attributions(model, method=method, given=given)
        if given:
            name = next(iter(given))
            raise InvalidInput(
                f"{name}: not a parameter of method '{method}' (a CAM takes layer_a, layer_b)",
                field=name,
                method=method,
            )
        return plan_cam(model, method=method, layers=[layer] if layer else [])
    except ClientError as exc:  # the plans name `layer(s)`: this endpoint calls it `field`
        if exc.field in ("layers", "layer"):
            exc.field = field
            exc.detail = re.sub(r"\blayers?:", f"{field}:", exc.detail, count=1)
        raise


@router.post(
    "/compare",
    response_model=None,
    responses=common.answers(
        "png: both /cam or /attributions pictures side by side; npy: float32 [2, B, H, W], "
        "the two answers stacked (models with one input size; an attribution's channels "
        "reduced as `view` draws them); json: predictions and the png",
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
    """Both models' predictions and explanations (a CAM or an attribution) of a picture."""
    model_a, model_b = pick_models(registry, common.split_names(options.models))
    method = str(getattr(options.method, "value", options.method))
    plans = (
        _plan(model_a, options, options.layer_a, "layer_a"),
        _plan(model_b, options, options.layer_b, "layer_b"),
    )
    fmt = options.fmt.value
    if fmt == "npy" and model_a.spec.input_size != model_b.spec.input_size:
        raise InvalidInput(
            f"format: npy stacks maps of one shape; '{model_a.name}' takes "
            f"{list(model_a.spec.input_size)} and '{model_b.name}' {list(model_b.spec.input_size)}"
            "; ask for png or json",
            field="format",
        )
    default = LOOKS[method in CAMS]
    colormap = options.colormap or default.colormap
    check_colormap(colormap)
    alpha = default.alpha if options.alpha is None else options.alpha
    check_finite("alpha", alpha, low=0.0, high=1.0)
    look = Look(colormap=colormap, alpha=alpha, view=options.view.value)
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
            layers=[_layer(plan) for plan in plans],
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


def _layer(plan: CamPlan | InputPlan) -> str | None:
    return plan.layers[0] if isinstance(plan, CamPlan) else None
