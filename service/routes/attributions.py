"""Attributions: class activation maps (Grad-CAM family) and gradient maps."""

from __future__ import annotations

import base64
import math
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BeforeValidator

from api_schemas.attributions import (
    Baseline,
    CamLayerItem,
    CamMapItem,
    CamMethod,
    CamResponse,
    CamUpsample,
    GradientMapItem,
    GradientMethod,
    GradientResponse,
    GradientView,
    TargetItem,
)
from api_schemas.errors import ErrorBody
from api_schemas.feature_maps import OutputFormat
from api_schemas.models import Fitting
from api_schemas.predictions import PredictionItem
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.attribution.pictures import Look
from service.engine.attribution.plan import check_finite, plan_cam, plan_gradients
from service.engine.images import upload_geometries
from service.engine.predict import Prediction
from service.engine.render import check_colormap
from service.routes.deps import ImagesDep, ModelDep, PoolDep, SettingsDep
from service.workers.tasks import cam_task, gradients_task

router = APIRouter(prefix="/v1/models", tags=["attributions"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (404, 413, 415, 422)
}


def _media(npy: str, schema: str) -> dict:
    return {
        200: {
            "description": f"png: heatmaps beside each input; npy: {npy}; "
            "json: metadata and the png as base64",
            "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}},
            },
        }
    }


_CAM_NPY = (
    "float32 [B, H, W] at the model's input size after ReLU ([B, T, H, W] for several targets); "
    "several layers give an npz (application/zip) with one such array per layer name"
)
_GRADIENT_NPY = (
    "float32 [B, C, H, W] w.r.t. the normalized input ([B, T, C, H, W] for several targets)"
)

TargetQuery = Annotated[
    str | None,
    Query(
        description="class indices or labels, comma-separated, explained for every image; "
        "default: each image's top-1 class",
        max_length=4096,
    ),
]
FormatQuery = Annotated[OutputFormat, Query(alias="format")]
AlphaQuery = Annotated[
    float,
    Query(ge=0, le=1, allow_inf_nan=False, description="weight of the heatmap over the input"),
]
TopKQuery = Annotated[
    int | None, Query(ge=1, description="predictions per image in json; default 5")
]
RandomizeQuery = Annotated[
    int,
    Query(
        ge=0,
        le=100_000,
        description="sanity check (Adebayo et al. 2018): re-run with this many top layers "
        "re-initialized "
        "(on a copy) and report the rank correlation in json; 0: off",
    ),
]


def _plus_signs(value: object) -> object:
    """An unencoded `+` in a query string arrives as a space: `method=gradcam++` is gradcam++."""
    return value.replace(" ", "+") if isinstance(value, str) else value


def split_names(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _json_only(fmt: OutputFormat, **options: object) -> None:
    for name, value in options.items():
        if value and fmt is not OutputFormat.json:
            raise InvalidInput(f"{name}: reported in format=json only", field=name)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _targets(model: LoadedModel, targets: np.ndarray) -> list[list[TargetItem]]:
    return [
        [TargetItem(class_index=int(t), label=model.label(int(t))) for t in row] for row in targets
    ]


def _predictions(rows: list[list[Prediction]]) -> list[list[PredictionItem]]:
    return [[PredictionItem(**vars(p)) for p in row] for row in rows]


@router.post(
    "/{model}/cam", responses={**_media(_CAM_NPY, "CamResponse"), **_ERRORS}, response_model=None
)
async def cam(
    model: ModelDep,
    images: ImagesDep,
    pool: PoolDep,
    settings: SettingsDep,
    method: Annotated[
        CamMethod,
        BeforeValidator(_plus_signs),
        Query(description="the CAM method (gradcam++ may be sent as gradcam%2B%2B or gradcam++)"),
    ] = CamMethod.gradcam,
    layer: Annotated[
        str | None,
        Query(
            description="layer name(s), comma-separated; default: the last spatial layer",
            max_length=4096,
        ),
    ] = None,
    target: TargetQuery = None,
    fmt: FormatQuery = OutputFormat.png,
    colormap: Annotated[
        str, Query(description="a matplotlib colormap name", max_length=64)
    ] = "jet",
    alpha: AlphaQuery = 0.5,
    normalize: Annotated[
        bool,
        Query(description="min-max scale each npy map to [0, 1], as pytorch-grad-cam returns it"),
    ] = False,
    top_k: TopKQuery = None,
    metrics: Annotated[
        str | None,
        Query(description="deletion, insertion or both: their AUC in json", max_length=64),
    ] = None,
    metric_steps: Annotated[
        int, Query(ge=2, le=256, description="points per deletion/insertion curve")
    ] = 32,
    randomize: RandomizeQuery = 0,
) -> Response:
    """Class activation maps (Grad-CAM family) of one or more layers for one or more classes."""
    plan = plan_cam(
        model,
        method=method.value,
        layers=split_names(layer),
        targets=target,
        metrics=split_names(metrics),
        metric_steps=metric_steps,
        randomize=randomize,
        top_k=top_k,
        normalize=normalize,
    )
    check_colormap(colormap)
    check_finite(alpha, field="alpha", low=0.0, high=1.0)
    _json_only(fmt, metrics=plan.metrics, randomize=plan.randomize)
    answer = await pool.run(
        cam_task,
        model,
        images,
        plan,
        fmt=fmt.value,
        look=Look(colormap=colormap, alpha=alpha),
        max_pixels=settings.max_image_pixels,
    )
    if fmt is not OutputFormat.json:
        return Response(answer.body, media_type=answer.media_type)
    result = answer.result
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
                        label=model.label(int(class_index)),
                        min=float(values.min()),
                        max=float(values.max()),
                        **extra,
                    )
                )
    batch, count = result.targets.shape
    height, width = model.spec.input_size
    shape = [batch, count, height, width] if result.several_targets else [batch, height, width]
    fits = await pool.cpu(upload_geometries, images, model.spec)
    body = CamResponse(
        model=model.name,
        fitting=[Fitting.model_validate(fit.to_dict()) for fit in fits],
        method=method,
        batch=batch,
        input_size=[height, width],
        layers=[
            CamLayerItem(name=lay.name, map_shape=list(lay.map_shape), shape=shape)
            for lay in result.layers
        ],
        targets=_targets(model, result.targets),
        predictions=_predictions(result.predictions),
        maps=maps,
        randomized_layers=list(result.randomized),
        png_base64=base64.b64encode(answer.body).decode("ascii"),
    )
    return Response(body.model_dump_json(), media_type="application/json")


@router.post(
    "/{model}/gradients",
    responses={**_media(_GRADIENT_NPY, "GradientResponse"), **_ERRORS},
    response_model=None,
)
async def gradients(
    model: ModelDep,
    images: ImagesDep,
    pool: PoolDep,
    settings: SettingsDep,
    method: Annotated[
        GradientMethod, Query(description="the gradient method")
    ] = GradientMethod.vanilla,
    target: TargetQuery = None,
    fmt: FormatQuery = OutputFormat.png,
    view: Annotated[
        GradientView,
        Query(
            description="png: |gradient| heatmap over the input, the gradient image, "
            "positive or negative saliency"
        ),
    ] = GradientView.heatmap,
    colormap: Annotated[
        str, Query(description="a matplotlib colormap name", max_length=64)
    ] = "inferno",
    alpha: AlphaQuery = 0.6,
    layer: Annotated[
        str | None,
        Query(
            description="guided-gradcam: the Grad-CAM layer; default the last spatial layer",
            max_length=1024,
        ),
    ] = None,
    upsample: Annotated[
        CamUpsample,
        Query(
            description="guided-gradcam: the Grad-CAM at input size, nearest and ReLU'd as "
            "Captum's GuidedGradCam, or bilinear and scaled to [0, 1] as the paper's figures"
        ),
    ] = CamUpsample.nearest,
    steps: Annotated[
        int, Query(ge=1, le=1024, description="integrated-gradients: Gauss-Legendre points")
    ] = 32,
    baseline: Annotated[
        Baseline, Query(description="integrated-gradients: starting point")
    ] = Baseline.zero,
    samples: Annotated[
        int, Query(ge=1, le=1024, description="smoothgrad: noisy copies per image")
    ] = 32,
    noise: Annotated[
        float,
        Query(
            gt=0,
            le=10,
            allow_inf_nan=False,
            description="smoothgrad: noise std / (max - min) of the input",
        ),
    ] = 0.15,
    seed: Annotated[int, Query(ge=0, le=2**63 - 1, description="smoothgrad: noise seed")] = 0,
    top_k: TopKQuery = None,
    randomize: RandomizeQuery = 0,
) -> Response:
    """Gradient maps w.r.t. the input: vanilla, guided, integrated gradients, SmoothGrad..."""
    plan = plan_gradients(
        model,
        method=method.value,
        targets=target,
        layer=layer,
        upsample=upsample.value,
        steps=steps,
        baseline=baseline.value,
        samples=samples,
        noise=noise,
        seed=seed,
        randomize=randomize,
        top_k=top_k,
    )
    check_colormap(colormap)
    check_finite(alpha, field="alpha", low=0.0, high=1.0)
    _json_only(fmt, randomize=plan.randomize)
    answer = await pool.run(
        gradients_task,
        model,
        images,
        plan,
        fmt=fmt.value,
        look=Look(colormap=colormap, alpha=alpha, view=view.value),
        max_pixels=settings.max_image_pixels,
    )
    if fmt is not OutputFormat.json:
        return Response(answer.body, media_type=answer.media_type)
    result = answer.result
    maps = []
    for image, row in enumerate(result.targets):
        for slot, class_index in enumerate(row):
            values = result.values[image, slot]
            correlation = result.rank_correlation
            maps.append(
                GradientMapItem(
                    image=image,
                    target=int(class_index),
                    label=model.label(int(class_index)),
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
    fits = await pool.cpu(upload_geometries, images, model.spec)
    body = GradientResponse(
        model=model.name,
        fitting=[Fitting.model_validate(fit.to_dict()) for fit in fits],
        method=method,
        batch=result.values.shape[0],
        input_size=list(model.spec.input_size),
        shape=shape,
        targets=_targets(model, result.targets),
        predictions=_predictions(result.predictions),
        maps=maps,
        randomized_layers=list(result.randomized),
        png_base64=base64.b64encode(answer.body).decode("ascii"),
    )
    return Response(body.model_dump_json(), media_type="application/json")
