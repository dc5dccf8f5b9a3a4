"""Top-k predictions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api_schemas.errors import ErrorBody
from api_schemas.models import Fitting
from api_schemas.predictions import PredictionItem, PredictResponse
from service.engine.images import upload_geometries
from service.engine.predict import check_top_k
from service.routes.deps import ImagesDep, ModelDep, PoolDep, SettingsDep
from service.workers.tasks import decode_batch, logits_work, predictions

router = APIRouter(prefix="/v1/models", tags=["predictions"])


@router.post(
    "/{model}/predict",
    response_model=PredictResponse,
    responses={
        404: {"model": ErrorBody},
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
)
async def predict(
    model: ModelDep,
    images: ImagesDep,
    pool: PoolDep,
    settings: SettingsDep,
    top_k: Annotated[int, Query(ge=1, description="classes per image")] = 5,
) -> PredictResponse:
    """Top-k classes with softmax probabilities, one list per image."""
    check_top_k(model, top_k)
    batch = await pool.cpu(decode_batch, model, images, max_pixels=settings.max_image_pixels)
    key, execute = logits_work(model)
    logits = await pool.forward(model, key, batch, batch.shape[0], execute)
    rows = await pool.cpu(predictions, model, logits, top_k=top_k)
    fits = await pool.cpu(upload_geometries, images, model.spec)
    return PredictResponse(
        model=model.name,
        predictions=[[PredictionItem(**vars(p)) for p in row] for row in rows],
        fitting=[Fitting.model_validate(fit.to_dict()) for fit in fits],
    )
