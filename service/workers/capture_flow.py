"""Captured layers for a request: from the activation cache, or decode + a batched forward."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_registry.registry import LoadedModel
from service.engine.feature_maps import FeatureMapPlan
from service.workers.activation_cache import ActivationCache
from service.workers.image_store import content_id
from service.workers.pool import InferencePool
from service.workers.tasks import capture_work, decode_batch


async def captured_layers(
    pool: InferencePool,
    cache: ActivationCache | None,
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: FeatureMapPlan,
    *,
    max_pixels: int,
    tenant: str,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the model's uint8 pixels, layer -> float32 outputs) for the plan's layers; cached
    layers are `tenant`'s own."""
    ids = [content_id(data) for data in uploads]
    if (
        cache is not None
        and (hit := cache.lookup(model, ids, plan.layers, tenant=tenant)) is not None
    ):
        return hit
    pixels = await pool.cpu(decode_batch, model, uploads, max_pixels=max_pixels)
    key, execute = capture_work(model, plan)
    outputs = await pool.forward(model, key, pixels, pixels.shape[0], execute)
    if cache is not None:
        cache.store(model, ids, pixels, outputs, tenant=tenant)
    return pixels, outputs
