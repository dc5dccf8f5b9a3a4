"""Top-k predictions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api_schemas.models import Fitting
from api_schemas.predictions import PredictionItem, PredictResponse
from service.engine.images import upload_geometries
from service.engine.predict import check_top_k
from service.routes.common import DEVICE_ERRORS, IMAGE_ERRORS, MODEL_ERRORS, error_responses
from service.routes.deps import ImagesDep, ModelDep, PoolDep, SettingsDep
from service.routes.options import PredictOptions
from service.workers.tasks import decode_batch, predict_work

router = APIRouter(prefix="/v1/models", tags=["predictions"])


@router.post(
    "/{model}/predict",
    response_model=PredictResponse,
    responses=error_responses(*MODEL_ERRORS, *IMAGE_ERRORS, *DEVICE_ERRORS),
)
async def predict(
    model: ModelDep,
    images: ImagesDep,
    pool: PoolDep,
    settings: SettingsDep,
    options: Annotated[PredictOptions, Query()],
) -> PredictResponse:
    """Top-k classes with softmax probabilities, one list per image."""
    check_top_k(model, options.top_k)
    pixels = await pool.cpu(decode_batch, model, images, max_pixels=settings.max_image_pixels)
    key, execute = predict_work(model)
    rows = await pool.forward(model, key, (pixels, options.top_k), pixels.shape[0], execute)
    fits = await pool.cpu(upload_geometries, images, model.spec)
    return PredictResponse(
        model=model.name,
        predictions=[[PredictionItem(**vars(p)) for p in row] for row in rows],
        fitting=[Fitting.model_validate(fit.to_dict()) for fit in fits],
    )
