"""Attribution work for the device thread: CAMs and gradient maps, encoded as png/npy/npz."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.attribution.explain import (
    CamResult,
    GradientResult,
    compute_cam,
    compute_gradients,
)
from service.engine.attribution.pictures import Look, cam_panel, gradient_panel
from service.engine.attribution.plan import CamPlan, GradientPlan
from service.engine.images import denormalize
from service.workers.answer import Answer
from service.workers.tasks import decode_batch


def _per_request_shape(values: np.ndarray, several_targets: bool) -> np.ndarray:
    """[B, T, ...] -> [B, ...] when a single target (or the default top-1) was asked for."""
    return values if several_targets else values[:, 0]


def cam_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: CamPlan,
    *,
    fmt: str,
    look: Look,
    max_pixels: int,
) -> Answer[CamResult]:
    batch = decode_batch(model, uploads, max_pixels=max_pixels)
    result = compute_cam(model, batch, plan, inputs=denormalize(batch, model.spec))
    if fmt == "npy":
        several = result.several_targets
        arrays = {layer.name: _per_request_shape(layer.maps, several) for layer in result.layers}
        if len(arrays) == 1:
            (values,) = arrays.values()
            return Answer(result, encode.npy_bytes(values), encode.NPY_MEDIA_TYPE)
        return Answer(result, encode.npz_bytes(arrays), encode.NPZ_MEDIA_TYPE)
    picture = cam_panel(result, look, model.label)
    return Answer(result, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE)


def gradients_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: GradientPlan,
    *,
    fmt: str,
    look: Look,
    max_pixels: int,
) -> Answer[GradientResult]:
    batch = decode_batch(model, uploads, max_pixels=max_pixels)
    result = compute_gradients(model, batch, plan, inputs=denormalize(batch, model.spec))
    if fmt == "npy":
        values = _per_request_shape(result.values, result.several_targets)
        return Answer(result, encode.npy_bytes(values), encode.NPY_MEDIA_TYPE)
    picture = gradient_panel(result, look, model.label)
    body = encode.png_bytes(np.ascontiguousarray(picture))
    return Answer(result, body, encode.PNG_MEDIA_TYPE)
