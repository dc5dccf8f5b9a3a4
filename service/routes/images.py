"""Upload once, explore many: images stored under an id only their tenant can use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from starlette.concurrency import run_in_threadpool

from api_schemas.images import StoredImage
from model_registry.errors import InvalidInput
from service.engine.images import decode_image
from service.engine.pixel_budget import check_pictures
from service.routes.common import IMAGE_ERRORS, error_responses
from service.routes.deps import ImageStoreDep, PoolDep, SettingsDep, TenantDep, pixel_budget

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.post("", response_model=StoredImage, responses=error_responses(*IMAGE_ERRORS))
async def store_image(
    store: ImageStoreDep,
    pool: PoolDep,
    settings: SettingsDep,
    tenant: TenantDep,
    image: Annotated[UploadFile, File(description="one picture")],
) -> StoredImage:
    """Store a picture (checked by decoding it) and return its id for later requests."""
    data = await image.read()
    if not data:
        raise InvalidInput("image[0] is empty", field="image")
    check_pictures([data], pixel_budget(settings))  # refused now, not at every later use
    picture = await pool.cpu(decode_image, data, max_pixels=settings.max_image_pixels)
    image_id = await run_in_threadpool(store.put, data, tenant)  # with Redis, network I/O
    return StoredImage(
        image_id=image_id,
        width=picture.width,
        height=picture.height,
        format=picture.format or "",
        bytes=len(data),
    )
