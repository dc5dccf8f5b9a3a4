"""Shared dependencies: settings, registry, pool, the addressed model, uploaded images."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, File, Request, UploadFile
from fastapi import Path as PathParam

from model_registry.errors import ClientError, InvalidInput, PayloadTooLarge
from model_registry.registry import LoadedModel, ModelRegistry
from service.settings import Settings
from service.workers.pool import InferencePool


class NotReady(ClientError):
    status = 503


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise NotReady("models are still loading; see GET /readyz", retry_after=1)
    return registry


def get_pool(request: Request) -> InferencePool:
    return request.app.state.pool


async def get_model(
    registry: Annotated[ModelRegistry, Depends(get_registry)],
    pool: Annotated[InferencePool, Depends(get_pool)],
    model: Annotated[str, PathParam(description="a model name from GET /v1/models", max_length=128)],
) -> AsyncIterator[LoadedModel]:
    """The addressed model; the request is admitted to its queue (503 when full) until it ends."""
    loaded = registry.get(model)
    with pool.admission.enter(loaded.name):
        yield loaded


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
PoolDep = Annotated[InferencePool, Depends(get_pool)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]


async def read_images(
    settings: SettingsDep,
    image: Annotated[
        list[UploadFile],
        File(description="the image(s); repeat the multipart field `image` for a batch"),
    ],
) -> list[bytes]:
    """The uploaded bytes, in order; decoding happens later, in the worker pool."""
    if len(image) > settings.max_images:
        raise PayloadTooLarge(
            f"image: {len(image)} images in one request, the limit is {settings.max_images}",
            field="image",
            max_images=settings.max_images,
        )
    uploads = [await upload.read() for upload in image]
    for index, data in enumerate(uploads):
        if not data:
            raise InvalidInput(f"image[{index}] is empty", field="image")
    return uploads


ImagesDep = Annotated[list[bytes], Depends(read_images)]
