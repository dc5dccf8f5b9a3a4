"""Shared dependencies: settings, registry, pool, jobs, the addressed model, uploaded images.

The getters are `async def` because they only read the app's state: FastAPI runs a plain
`def` dependency in its thread pool, and those hops cost more than the reads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, File, Query, Request, UploadFile
from fastapi import Path as PathParam
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from model_registry.datasets import DatasetCatalog, is_reference
from model_registry.errors import InvalidInput, NotReady, PayloadTooLarge
from model_registry.registry import LoadedModel, ModelRegistry
from service.engine.pixel_budget import PixelBudget, check_pictures
from service.jobs.job_records import Jobs
from service.settings import Settings
from service.workers.activation_cache import ActivationCache
from service.workers.image_store import Images, ImageStore
from service.workers.pool import InferencePool
from service.workers.tenancy import OPEN, SCOPE_KEY, Tenant


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return _registry(request)


def _registry(request: Request) -> ModelRegistry:
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise NotReady("models are still loading; see GET /readyz", retry_after=1)
    return registry


async def get_pool(request: Request) -> InferencePool:
    return request.app.state.pool


async def addressed_model(
    request: Request,
    model: Annotated[
        str, PathParam(description="a model name from GET /v1/models", max_length=128)
    ],
) -> AsyncIterator[LoadedModel]:
    """The addressed model; the request is admitted to its queue (503 when full) until it ends.

    The app's state is read from the request, not through sub-dependencies: FastAPI's solver
    pays for every dependency, and a cached view would pay it on every call."""
    loaded = _registry(request).get(model)
    with request.app.state.pool.admission.enter(loaded.name):
        yield loaded


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
PoolDep = Annotated[InferencePool, Depends(get_pool)]
ModelDep = Annotated[LoadedModel, Depends(addressed_model)]


async def get_activation_cache(request: Request) -> ActivationCache | None:
    return request.app.state.activations


ActivationCacheDep = Annotated[ActivationCache | None, Depends(get_activation_cache)]


async def get_tenant(request: Request) -> Tenant:
    """The tenant the auth middleware found for the key (one open tenant without keys)."""
    return request.scope.get(SCOPE_KEY, OPEN)


TenantDep = Annotated[Tenant, Depends(get_tenant)]


async def get_image_store(request: Request) -> Images:
    return request.app.state.images


ImageStoreDep = Annotated[Images, Depends(get_image_store)]


async def get_jobs(request: Request) -> Jobs:
    return request.app.state.jobs


JobsDep = Annotated[Jobs, Depends(get_jobs)]


async def get_datasets(request: Request) -> DatasetCatalog:
    return request.app.state.datasets


DatasetsDep = Annotated[DatasetCatalog, Depends(get_datasets)]


_REF = "dataset:[^/,]{1,64}/[0-9]{1,12}"
# What `image` takes, as the OpenAPI document states it: dataset references, comma-separated.
# A name or index the catalog lacks is still refused (404, 422), which no pattern can know.
REFERENCES_PATTERN = rf"^ *{_REF} *(?:, *{_REF} *)*$"
_REFERENCES = re.compile(REFERENCES_PATTERN)
DatasetReferences = Annotated[str, Field(json_schema_extra={"pattern": REFERENCES_PATTERN})]


def _check_references(values: list[str] | None) -> None:
    for value in values or ():
        if not _REFERENCES.fullmatch(value):
            raise InvalidInput(
                f"image: '{value[:80]}' is not a dataset reference; write dataset:NAME/INDEX "
                "(e.g. dataset:digits/17), comma-separated for several",
                field="image",
            )


def _parts(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


async def read_images(
    request: Request,
    image: Annotated[
        list[UploadFile] | None,
        File(description="the image(s); repeat the multipart field `image` for a batch"),
    ] = None,
    image_ref: Annotated[
        list[DatasetReferences] | None,
        Query(
            alias="image",
            description="pictures of a dataset instead of an upload: dataset:NAME/INDEX "
            "(GET /v1/datasets); repeat or comma-separate for a batch",
            max_length=4096,
        ),
    ] = None,
    image_id: Annotated[
        list[str] | None,
        Query(
            description="ids from POST /v1/images instead of an upload (or dataset:NAME/INDEX); "
            "repeat or comma-separate for a batch"
        ),
    ] = None,
) -> list[bytes]:
    """The pictures' bytes in order (uploads, dataset pictures, then stored ids); decoding
    happens in the pool. Every way of naming a picture resolves here."""
    state = request.app.state
    settings, store, datasets = state.settings, state.images, state.datasets
    tenant = request.scope.get(SCOPE_KEY, OPEN)
    _check_references(image_ref)
    references = _parts(image_ref)
    ids = _parts(image_id)
    count = len(image or ()) + len(references) + len(ids)
    if count == 0:
        raise InvalidInput(
            "image: no image given; upload it as multipart form field 'image' (repeat it for a "
            "batch) "
            "or pass image_id from POST /v1/images",
            field="image",
        )
    if count > settings.max_images:
        raise PayloadTooLarge(
            f"image: {count} images in one request, the limit is {settings.max_images}",
            field="image",
            max_images=settings.max_images,
        )
    uploads = [await upload.read() for upload in image or ()]
    for index, data in enumerate(uploads):
        if not data:
            raise InvalidInput(f"image[{index}] is empty", field="image")
    named = [datasets.read(ref, field="image") for ref in references]
    # With Redis the store does network I/O: a thread, not the event loop. The in-process
    # store is a dict lookup, cheaper than the hop to a thread.
    if isinstance(store, ImageStore):
        stored = [_stored(store, datasets, image_id, tenant) for image_id in ids]
    else:
        stored = [
            await run_in_threadpool(_stored, store, datasets, image_id, tenant) for image_id in ids
        ]
    pictures = uploads + named + stored
    # Headers only, microseconds each: hostile sizes are refused before the request queues.
    check_pictures(pictures, pixel_budget(settings))
    return pictures


def pixel_budget(settings: Settings) -> PixelBudget:
    """The picture limits of `settings`, for `check_pictures`."""
    limits = (settings.max_image_pixels, settings.max_request_pixels, settings.max_aspect_ratio)
    return PixelBudget(*limits)


def _stored(store: Images, datasets: DatasetCatalog, image_id: str, tenant: Tenant) -> bytes:
    if is_reference(image_id):
        return datasets.read(image_id, field="image_id")
    return store.get(image_id, tenant)


ImagesDep = Annotated[list[bytes], Depends(read_images)]


@dataclass(frozen=True)
class Serving:
    """What a route hands its work to: the addressed model, the pool, the jobs, the settings,
    and the request (a job shared through Redis keeps it for the replica that runs it)."""

    model: LoadedModel
    pool: InferencePool
    jobs: Jobs
    settings: Settings
    request: Request | None = None


async def get_serving(
    request: Request, model: ModelDep, pool: PoolDep, jobs: JobsDep, settings: SettingsDep
) -> Serving:
    return Serving(model, pool, jobs, settings, request)


ServingDep = Annotated[Serving, Depends(get_serving)]
