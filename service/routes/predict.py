"""Predictions: top-k classes, class maps of segmentation models, boxes of detection models."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.models import Fitting
from api_schemas.predictions import (
    ClassShareItem,
    DetectionItem,
    PredictionItem,
    PredictResponse,
    SegmentationItem,
)
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from model_registry.spec import CLASSIFICATION, DETECTION, SEGMENTATION
from service.engine import encode
from service.engine.dense.outputs import Detection, shares
from service.engine.images import Geometry, upload_geometries
from service.engine.predict import check_top_k
from service.routes.common import (
    DEVICE_ERRORS,
    IMAGE_ERRORS,
    MODEL_ERRORS,
    answers,
)
from service.routes.deps import ImagesDep, ModelDep, PoolDep, SettingsDep
from service.routes.options import PredictOptions
from service.workers.dense_tasks import (
    boxes_png,
    detect_work,
    mask_png,
    prediction_views,
    segment_work,
)
from service.workers.tasks import decode_batch, predict_work

router = APIRouter(prefix="/v1/models", tags=["predictions"])

FORMATS = {
    CLASSIFICATION: ("json",),
    SEGMENTATION: ("json", "png", "npy"),
    DETECTION: ("json", "png"),
}


def _check_format(model: LoadedModel, fmt: str) -> None:
    allowed = FORMATS[model.spec.task]
    if fmt not in allowed:
        raise InvalidInput(
            f"format: '{fmt}' is not available for {model.spec.task} model '{model.name}'; "
            f"use {', '.join(allowed)}",
            field="format",
            choices=list(allowed),
        )


@router.post(
    "/{model}/predict",
    response_model=PredictResponse,
    responses=answers(
        "json: classes, class shares or boxes; png: mask or boxes drawn; npy: class map",
        encode.PNG_MEDIA_TYPE,
        encode.NPY_MEDIA_TYPE,
        body=PredictResponse,
        errors=(*MODEL_ERRORS, *IMAGE_ERRORS, *DEVICE_ERRORS),
    ),
)
async def predict(
    model: ModelDep,
    images: ImagesDep,
    pool: PoolDep,
    settings: SettingsDep,
    options: Annotated[PredictOptions, Query()],
) -> PredictResponse | Response:
    """Top-k classes, the classes present in a class map, or boxes, one entry per image."""
    fmt = options.fmt.value
    _check_format(model, fmt)
    if model.spec.task == CLASSIFICATION:
        check_top_k(model, options.top_k)
    pixels = await pool.cpu(decode_batch, model, images, max_pixels=settings.max_image_pixels)
    fits = await pool.cpu(upload_geometries, images, model.spec)
    fitting = [Fitting.model_validate(fit.to_dict()) for fit in fits]
    size = pixels.shape[0]
    canvas = {"canvas": options.canvas.value, "max_pixels": settings.max_image_pixels}
    if model.spec.task == SEGMENTATION:
        key, execute = segment_work(model)
        maps: np.ndarray = await pool.forward(model, key, pixels, size, execute)
        if fmt == "npy":
            body = await pool.cpu(encode.npy_bytes, maps)
            return Response(body, media_type=encode.NPY_MEDIA_TYPE)
        if fmt == "png":
            draw_on = await pool.cpu(prediction_views, model, images, pixels, **canvas)
            body = await pool.cpu(mask_png, model, draw_on, maps)
            return Response(body, media_type=encode.PNG_MEDIA_TYPE)
        return PredictResponse(
            model=model.name,
            task=SEGMENTATION,
            segmentation=[_segmentation(model, class_map) for class_map in maps],
            fitting=fitting,
        )
    if model.spec.task == DETECTION:
        key, execute = detect_work(model)
        found: list[list[Detection]] = await pool.forward(model, key, pixels, size, execute)
        input_size = (pixels.shape[1], pixels.shape[2])
        if fmt == "png":
            draw_on = await pool.cpu(prediction_views, model, images, pixels, **canvas)
            body = await pool.cpu(boxes_png, model, draw_on, found, input_size)
            return Response(body, media_type=encode.PNG_MEDIA_TYPE)
        return PredictResponse(
            model=model.name,
            task=DETECTION,
            detections=[
                [_detection(d, fit, input_size) for d in dets]
                for dets, fit in zip(found, fits, strict=True)
            ],
            fitting=fitting,
        )
    key, execute = predict_work(model)
    rows = await pool.forward(model, key, (pixels, options.top_k), size, execute)
    return PredictResponse(
        model=model.name,
        predictions=[[PredictionItem(**vars(p)) for p in row] for row in rows],
        fitting=fitting,
    )


def _segmentation(model: LoadedModel, class_map: np.ndarray) -> SegmentationItem:
    return SegmentationItem(
        size=list(class_map.shape),
        classes=[ClassShareItem(**vars(share)) for share in shares(class_map, model)],
    )


def to_source(box: tuple[float, ...], fit: Geometry, input_size: tuple[int, int]) -> list[float]:
    """A box in model-input pixels -> the uploaded picture's pixels (the `fitting` box)."""
    left, top, right, bottom = fit.box
    sx, sy = (right - left) / input_size[1], (bottom - top) / input_size[0]
    x0, y0, x1, y1 = box
    return [
        round(left + x0 * sx, 2),
        round(top + y0 * sy, 2),
        round(left + x1 * sx, 2),
        round(top + y1 * sy, 2),
    ]


def _detection(found: Detection, fit: Geometry, input_size: tuple[int, int]) -> DetectionItem:
    return DetectionItem(
        box=[round(v, 2) for v in found.box],
        source_box=to_source(found.box, fit, input_size),
        class_index=found.class_index,
        label=found.label,
        score=found.score,
    )
