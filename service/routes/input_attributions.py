"""Attributions to the input pixels: every gradient method and the perturbation methods."""

from __future__ import annotations

import math
from functools import partial
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from api_schemas.input_attributions import InputAttributionResponse, InputMapItem
from api_schemas.models import Fitting
from api_schemas.predictions import PredictionItem
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.input_attributions import (
    InputPlan,
    InputResult,
    estimate_seconds,
    plan_input_attributions,
)
from service.engine.attribution.pictures import Look
from service.engine.checks import check_finite
from service.engine.encode import NPY_MEDIA_TYPE, PNG_MEDIA_TYPE
from service.engine.images import Geometry, upload_geometries
from service.engine.progress import Progress, reporting
from service.engine.render import check_colormap
from service.jobs.job_store import Encoded
from service.routes import common
from service.routes.deps import ImagesDep, ServingDep
from service.routes.explained_targets import explained_label, target_items
from service.routes.input_attribution_options import InputAttributionOptions
from service.workers.attribution_tasks import attribution_task

router = APIRouter(prefix="/v1/models", tags=["attributions"])

_NPY = "float32 [B, C, H, W] on the model input ([B, T, C, H, W] for several targets)"
_ANSWERS: dict[int | str, dict[str, Any]] = {
    **common.answers(
        f"png: heatmaps beside each input; npy: {_NPY}; json: metadata and the png as base64",
        PNG_MEDIA_TYPE,
        NPY_MEDIA_TYPE,
        body=InputAttributionResponse,
        errors=(*common.MODEL_ERRORS, *common.IMAGE_ERRORS, *common.DEVICE_ERRORS),
    ),
    **common.JOB_ACCEPTED,
    **common.error_responses(*common.JOB_ERRORS),
}


@router.post("/{model}/attributions", responses=_ANSWERS, response_model=None)
async def attributions(
    serving: ServingDep,
    images: ImagesDep,
    options: Annotated[InputAttributionOptions, Query()],
) -> Response:
    """Attributions to the input pixels: gradient methods, occlusion and the other perturbations."""
    model, settings = serving.model, serving.settings
    plan = plan_input_attributions(
        model,
        method=str(options.method),
        given=options.method_parameters(),
        **options.target_args(),
    )
    check_colormap(options.colormap)
    check_finite("alpha", options.alpha, low=0.0, high=1.0)
    look = Look(**options.answer_args(exclude={"fmt", "run_async"}))
    for name, value in (("metrics", plan.trust.metrics), ("randomize", plan.trust.randomize)):
        if value and options.fmt.value != "json":
            raise InvalidInput(f"{name}: reported in format=json only", field=name)
    fmt, pixels = options.fmt.value, settings.max_image_pixels

    def work(progress: Progress) -> Encoded:
        with reporting(progress):
            answer = attribution_task(model, images, plan, fmt=fmt, look=look, max_pixels=pixels)
        fits = upload_geometries(images, model.spec) if fmt == "json" else []
        body = partial(_body, model, plan, cast(InputResult, answer.result), fits)
        return common.encoded(fmt, answer, body)

    speed = settings.flops_per_second(model.device.type)
    estimate = estimate_seconds(model, plan, images=len(images), flops_per_second=speed)
    return await common.answer_or_job(
        serving,
        "attributions",
        work,
        total=1,
        estimate_s=estimate,
        run_async=options.run_async,
    )


def _body(
    model: LoadedModel,
    plan: InputPlan,
    result: InputResult,
    fits: list[Geometry],
    png_base64: str,
) -> BaseModel:
    maps = [
        InputMapItem(
            image=image,
            target=int(class_index),
            label=explained_label(model, result, int(class_index)),
            min=float(result.values[image, slot].min()),
            max=float(result.values[image, slot].max()),
            **_trust(result, image, slot),
        )
        for image, row in enumerate(result.targets)
        for slot, class_index in enumerate(row)
    ]
    values = result.values
    shape = list(values.shape) if result.several_targets else [values.shape[0], *values.shape[2:]]
    return InputAttributionResponse(
        model=model.name,
        method=plan.method,
        parameters=plan.parameters(),
        batch=values.shape[0],
        input_size=list(model.spec.input_size),
        fitting=[Fitting.model_validate(fit.to_dict()) for fit in fits],
        shape=shape,
        targets=target_items(model, result),
        predictions=[[PredictionItem(**vars(p)) for p in row] for row in result.predictions],
        maps=maps,
        png_base64=png_base64,
        mask=None if result.mask is None else result.mask.tolist(),
        randomized_layers=list(result.randomized),
    )


def _trust(result: InputResult, image: int, slot: int) -> dict[str, float | None]:
    """The map's AUCs and rank correlation where asked (None where not, or not finite)."""
    out = {}
    for name in ("deletion", "insertion", "rank_correlation"):
        values = getattr(result, name)
        if values is not None:
            value = float(values[image, slot])
            out[name] = value if math.isfinite(value) else None
    return out
