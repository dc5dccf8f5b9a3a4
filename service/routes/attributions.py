"""Attributions: class activation maps (Grad-CAM family) and gradient maps."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, create_model

from api_schemas import attributions as schemas
from api_schemas.attributions import CamLayerItem, CamMapItem, GradientMapItem
from api_schemas.feature_maps import OutputFormat
from api_schemas.models import Fitting
from api_schemas.predictions import PredictionItem
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.explain import CamResult, GradientResult
from service.engine.attribution.pictures import Look
from service.engine.attribution.plan import CamPlan, GradientPlan, plan_cam, plan_gradients
from service.engine.checks import check_finite
from service.engine.encode import NPY_MEDIA_TYPE as NPY
from service.engine.encode import NPZ_MEDIA_TYPE as NPZ
from service.engine.encode import PNG_MEDIA_TYPE as PNG
from service.engine.images import Geometry, upload_geometries
from service.engine.predict import Prediction
from service.engine.progress import Progress, reporting
from service.engine.render import check_colormap
from service.jobs.job_store import Encoded
from service.routes import common
from service.routes.attribution_options import (
    CamMethod,
    CamOptions,
    GradientMethod,
    GradientOptions,
)
from service.routes.deps import ImagesDep, Serving, ServingDep
from service.routes.explained_targets import explained_label, target_items
from service.workers.attribution_tasks import attribution_task

router = APIRouter(prefix="/v1/models", tags=["attributions"])

CamResponse = create_model("CamResponse", __base__=schemas.CamResponse, method=(CamMethod, ...))
GradientResponse = create_model(
    "GradientResponse", __base__=schemas.GradientResponse, method=(GradientMethod, ...)
)

_ERRORS = (*common.MODEL_ERRORS, *common.IMAGE_ERRORS, *common.DEVICE_ERRORS)


def _answers(npy: str, body: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    description = (
        f"png: heatmaps beside each input; npy: {npy}; json: metadata and the png as base64"
    )
    return {
        **common.answers(description, PNG, NPY, NPZ, body=body, errors=_ERRORS),
        **common.JOB_ACCEPTED,  # async=true
        **common.error_responses(*common.JOB_ERRORS),
    }


_CAM_NPY = (
    "float32 [B, H, W] at the model's input size after ReLU ([B, T, H, W] for several targets); "
    "several layers give an npz (application/zip) with one such array per layer name"
)
_GRADIENT_NPY = (
    "float32 [B, C, H, W] w.r.t. the normalized input ([B, T, C, H, W] for several targets)"
)


def _look(options: CamOptions | GradientOptions) -> Look:
    """The picture's colours, checked before any compute."""
    check_colormap(options.colormap)
    check_finite("alpha", options.alpha, low=0.0, high=1.0)
    return Look(**options.answer_args(exclude={"fmt", "run_async"}))


def _json_only(fmt: OutputFormat, **options: object) -> None:
    for name, value in options.items():
        if value and fmt is not OutputFormat.json:
            raise InvalidInput(f"{name}: reported in format=json only", field=name)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _predictions(rows: list[list[Prediction]]) -> list[list[PredictionItem]]:
    return [[PredictionItem(**vars(p)) for p in row] for row in rows]


def _shared_fields(
    model: LoadedModel,
    options: CamOptions | GradientOptions,
    result: CamResult | GradientResult,
    fits: list[Geometry],
    png_base64: str,
) -> dict[str, Any]:
    """The fields a CAM answer and a gradient answer fill alike."""
    return {
        "model": model.name,
        "fitting": [Fitting.model_validate(fit.to_dict()) for fit in fits],
        "method": options.method,
        "targets": target_items(model, result),
        "predictions": _predictions(result.predictions),
        "randomized_layers": list(result.randomized),
        "png_base64": png_base64,
    }


async def _attribute(
    serving: Serving,
    images: list[bytes],
    options: CamOptions | GradientOptions,
    planner: Callable[..., CamPlan | GradientPlan],
    to_json: Callable[..., BaseModel],
) -> Response:
    """Plan, check the picture's options, compute on the device thread, answer in the format."""
    plan = planner(serving.model, **options.plan_args())
    look = _look(options)
    _json_only(options.fmt, metrics=getattr(plan, "metrics", ()), randomize=plan.randomize)
    model, fmt = serving.model, options.fmt.value
    pixels = serving.settings.max_image_pixels

    def attribution(progress: Progress) -> Encoded:
        with reporting(progress):
            answer = attribution_task(model, images, plan, fmt=fmt, look=look, max_pixels=pixels)
        fits = upload_geometries(images, model.spec) if fmt == "json" else []
        return common.encoded(fmt, answer, partial(to_json, model, options, answer.result, fits))

    kind = "cam" if isinstance(options, CamOptions) else "gradients"
    run_async = getattr(options, "run_async", None)
    return await common.answer_or_job(
        serving, kind, attribution, total=1, estimate_s=0.0, run_async=run_async
    )


@router.post("/{model}/cam", responses=_answers(_CAM_NPY, CamResponse), response_model=None)
async def cam(
    serving: ServingDep, images: ImagesDep, options: Annotated[CamOptions, Query()]
) -> Response:
    """Class activation maps (Grad-CAM family) of one or more layers for one or more classes."""
    return await _attribute(serving, images, options, plan_cam, _cam_body)


def _cam_body(
    model: LoadedModel,
    options: CamOptions,
    result: CamResult,
    fits: list[Geometry],
    png_base64: str,
) -> BaseModel:
    maps = []
    for layer_result in result.layers:
        for image, row in enumerate(result.targets):
            for slot, class_index in enumerate(row):
                values = layer_result.maps[image, slot]
                extra = {}
                for name in ("deletion", "insertion", "rank_correlation"):
                    array = getattr(layer_result, name)
                    extra[name] = None if array is None else _finite(array[image, slot])
                maps.append(
                    CamMapItem(
                        layer=layer_result.name,
                        image=image,
                        target=int(class_index),
                        label=explained_label(model, result, int(class_index)),
                        min=float(values.min()),
                        max=float(values.max()),
                        **extra,
                    )
                )
    batch, count = result.targets.shape
    height, width = model.spec.input_size
    shape = [batch, count, height, width] if result.several_targets else [batch, height, width]
    return CamResponse(
        **_shared_fields(model, options, result, fits, png_base64),
        batch=batch,
        input_size=[height, width],
        layers=[
            CamLayerItem(name=lay.name, map_shape=list(lay.map_shape), shape=shape)
            for lay in result.layers
        ],
        maps=maps,
    )


@router.post(
    "/{model}/gradients",
    responses=_answers(_GRADIENT_NPY, GradientResponse),
    response_model=None,
)
async def gradients(
    serving: ServingDep, images: ImagesDep, options: Annotated[GradientOptions, Query()]
) -> Response:
    """Gradient maps w.r.t. the input: vanilla, guided, integrated gradients, SmoothGrad..."""
    return await _attribute(serving, images, options, plan_gradients, _gradient_body)


def _gradient_body(
    model: LoadedModel,
    options: GradientOptions,
    result: GradientResult,
    fits: list[Geometry],
    png_base64: str,
) -> BaseModel:
    maps = []
    for image, row in enumerate(result.targets):
        for slot, class_index in enumerate(row):
            values = result.values[image, slot]
            correlation = result.rank_correlation
            maps.append(
                GradientMapItem(
                    image=image,
                    target=int(class_index),
                    label=explained_label(model, result, int(class_index)),
                    min=float(values.min()),
                    max=float(values.max()),
                    rank_correlation=None
                    if correlation is None
                    else _finite(correlation[image, slot]),
                )
            )
    shape = (
        list(result.values.shape)
        if result.several_targets
        else [result.values.shape[0], *result.values.shape[2:]]
    )
    return GradientResponse(
        **_shared_fields(model, options, result, fits, png_base64),
        batch=result.values.shape[0],
        input_size=list(model.spec.input_size),
        shape=shape,
        maps=maps,
    )
