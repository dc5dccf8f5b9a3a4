"""The application factory: settings in, a FastAPI app with registry, pool and middleware out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from threadpoolctl import threadpool_limits

from model_registry.config import default_specs, load_config, load_datasets
from model_registry.datasets import DatasetCatalog
from model_registry.registry import ModelRegistry, resolve_device
from service.engine import encode
from service.error_handlers import install_error_handlers
from service.jobs.replay import ReplayCapture
from service.jobs.stores import build_jobs, build_queue
from service.metrics import Metrics, hook_count
from service.middleware.api_key import EXEMPT, ApiKeyMiddleware
from service.middleware.body_limit import BodyLimitMiddleware
from service.middleware.request_context import RequestContextMiddleware
from service.middleware.security_headers import SecurityHeadersMiddleware
from service.middleware.tenants import load_keys
from service.openapi import install_openapi
from service.routes import (
    attributions,
    compare,
    compare_picture,
    concepts,
    contributions,
    datasets,
    docs,
    embedding,
    evaluate,
    exemplars,
    feature_maps,
    filters,
    health,
    images,
    input_attributions,
    invert,
    jobs,
    maximize,
    methods,
    metrics,
    models,
    predict,
    stats,
    tcav,
)
from service.routes import ui as portal
from service.settings import Settings
from service.workers.activation_cache import ActivationCache
from service.workers.pool import InferencePool
from service.workers.stores import build_images

log = logging.getLogger("layerscope")

RegistryLoader = Callable[[Settings], ModelRegistry]


def load_registry(settings: Settings) -> ModelRegistry:
    """Every configured model, built, moved to the device, catalogued and warmed up.

    Raises:
        ConfigError: a bad entry; the message names the entry and the field.
    """
    specs = load_config(settings.models) if settings.models else default_specs()
    device = resolve_device(settings.device)
    registry = ModelRegistry.load(
        specs,
        device,
        allow_downloads=settings.allow_downloads,
        pack_convolutions=settings.pack_convolutions,
        channels_last_pooling=settings.channels_last_pooling,
    )
    encode.use_fast_png(settings.fast_png)
    for model in registry:
        log.info(
            "model %s (%s) on %s, %s, %d layers",
            model.name,
            model.spec.architecture,
            device,
            "pretrained" if model.pretrained else "random weights",
            len(model.catalog),
        )
    return registry


def _pool(settings: Settings, metrics: Metrics) -> InferencePool:
    return InferencePool(
        cpu_threads=settings.cpu_threads,
        max_batch=settings.max_batch,
        max_wait_s=None
        if settings.max_batch_wait_ms is None
        else settings.max_batch_wait_ms / 1000,
        max_queue=settings.max_queue,
        timeout_s=settings.request_timeout_s,
        on_batch=metrics.observe_batch,
        on_wait=metrics.observe_wait,
        on_reject=metrics.reject,
        on_stage=lambda stage, seconds: metrics.stages.labels(stage).observe(seconds),
    )


def _load_on_device(settings: Settings, registry_loader: RegistryLoader) -> ModelRegistry:
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    # numpy's BLAS keeps its own spinning thread team: with two teams spinning on the same
    # cores, a PCA view is many times slower. Process-wide, kept until exit.
    threadpool_limits(limits=settings.blas_threads, user_api="blas")
    return registry_loader(settings)


def create_app(
    settings: Settings | None = None, *, registry_loader: RegistryLoader = load_registry
) -> FastAPI:
    """Build the app; models load in the lifespan (start-up fails on a bad model entry)."""
    settings = settings or Settings()
    keys = load_keys(settings)  # a bad key setting stops start-up here (ConfigError)
    metrics_ = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = _pool(settings, metrics_)
        app.state.pool = pool
        app.state.jobs = build_jobs(settings)
        app.state.jobs.start()
        queue = None
        try:
            if settings.models:  # folders listed once, before the models load
                app.state.datasets = DatasetCatalog(load_datasets(settings.models))
            # Loading and the catalog's warm-up pass run on the device thread, the only
            # thread that ever calls torch's parallel kernels.
            device = resolve_device(settings.device)
            app.state.registry = await pool.on_device(
                device, _load_on_device, settings, registry_loader
            )
            # With Redis, this replica also runs jobs from the shared queue (once it is ready).
            queue = build_queue(settings, app, app.state.jobs)
            if queue is not None:
                await queue.start()
            yield
        finally:
            if queue is not None:  # its running jobs go back to the queue for another replica
                await queue.stop()
            app.state.jobs.shutdown()  # running jobs stop at their next step
            app.state.registry = None
            pool.shutdown(settings.drain_timeout_s)

    app = FastAPI(
        title="layerscope",
        version="0.1.0",
        summary="What a convolutional network sees: feature maps, attributions and model insight "
        "over HTTP.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from routes.docs, with assets served here
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics_
    app.state.registry = None
    app.state.pool = None
    app.state.datasets = DatasetCatalog()  # the built-in digits; lifespan adds the folders
    app.state.images = build_images(settings)
    app.state.activations = (
        ActivationCache(max_bytes=settings.activation_cache_bytes)
        if settings.activation_cache_bytes
        else None
    )
    metrics_.watch(
        lambda: app.state.pool.admission.depths() if app.state.pool else {},
        lambda: {m.name: hook_count(m.module) for m in app.state.registry or ()},
    )
    install_error_handlers(app)
    for router in (
        health.router,
        metrics.router,
        models.router,
        images.router,
        predict.router,
        feature_maps.router,
    ):
        app.include_router(router)
    insight = (filters.router, maximize.router, invert.router, stats.router, embedding.router)
    attribution = (
        attributions.router,
        input_attributions.router,
        contributions.router,
        methods.router,
        evaluate.router,
    )
    comparison = (compare.router, compare_picture.router)
    units = (exemplars.router,)
    for router in (*attribution, *insight, datasets.router, *units, *comparison, jobs.router):
        app.include_router(router)
    app.include_router(concepts.router)  # DFF
    app.include_router(tcav.router)
    app.include_router(portal.router)  # GET /ui: the debugging portal (not in the OpenAPI schema)
    app.include_router(docs.router)  # /docs, /redoc and their assets: no CDN, works offline
    protected = None if keys is None else lambda path: path not in EXEMPT
    install_openapi(app, protected=protected, max_images=settings.max_images)
    # Added last = outermost: request ids and metrics see every answer, auth ones included.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            expose_headers=["Location", "Retry-After", "X-Request-ID"],
        )
    if keys is not None:
        app.add_middleware(ApiKeyMiddleware, keys=keys, exempt_prefixes=("/ui", "/docs"))
    if settings.redis_url is not None:
        app.add_middleware(ReplayCapture)  # a job keeps its request for the replica that runs it
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics_)
    app.add_middleware(SecurityHeadersMiddleware)  # nosniff and Referrer-Policy on every answer
    return app
