"""The application factory: settings in, a FastAPI app with registry and pool out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI

from model_registry.config import default_specs, load_config
from model_registry.registry import ModelRegistry, resolve_device
from service.errors import install_error_handlers
from service.routes import attributions, feature_maps, health, models, predict
from service.settings import Settings
from service.workers.pool import InferencePool

log = logging.getLogger("layerscope")


def load_registry(settings: Settings) -> ModelRegistry:
    """Every configured model, built, moved to the device, catalogued and warmed up.

    Raises:
        ConfigError: a bad entry; the message names the entry and the field.
    """
    specs = load_config(settings.models) if settings.models else default_specs()
    device = resolve_device(settings.device)
    registry = ModelRegistry.load(specs, device, allow_downloads=settings.allow_downloads)
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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        app.state.pool = InferencePool(settings.worker_threads)
        try:
            app.state.registry = load_registry(settings)
            yield
        finally:
            app.state.registry = None
            app.state.pool.shutdown()

    app = FastAPI(
        title="layerscope",
        version="0.1.0",
        summary="What a convolutional network sees: feature maps, predictions and layer catalogs over HTTP.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = None
    install_error_handlers(app)
    for router in (health.router, models.router, predict.router, feature_maps.router):
        app.include_router(router)
    app.include_router(attributions.router)
    return app
