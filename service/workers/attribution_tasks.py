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
from service.engine.attribution.input_attributions import InputPlan, compute_input_attributions
from service.engine.attribution.pictures import Look, cam_panel, gradient_panel
from service.engine.attribution.plan import CamPlan, GradientPlan
from service.engine.images import display_pixels, model_pixels, to_batch
from service.engine.upload_view import UploadView, input_view, upload_view
from service.workers.answer import Answer
from service.workers.tasks import decode_images


def _per_request_shape(values: np.ndarray, several_targets: bool) -> np.ndarray:
    """[B, T, ...] -> [B, ...] when a single target (or the default top-1) was asked for."""
    return values if several_targets else values[:, 0]


def attribution_task(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: CamPlan | GradientPlan | InputPlan,
    *,
    fmt: str,
    look: Look,
    max_pixels: int,
) -> Answer[CamResult | GradientResult]:
    """CAMs or gradient maps of the uploads: npy (npz for several layers) or the png panel."""
    images = decode_images(uploads, max_pixels=max_pixels)
    pixels = model_pixels(images, model.spec)
    batch = to_batch(pixels, model.spec, model.device)
    inputs = display_pixels(pixels)
    if fmt == "npy":
        views: list[UploadView] = []
    elif look.canvas == "input":
        views = [input_view(picture) for picture in inputs]
    else:
        views = [upload_view(image, model.spec) for image in images]
    result: CamResult | GradientResult
    if isinstance(plan, CamPlan):
        result = cams = compute_cam(model, batch, plan, inputs=inputs)
        arrays = {layer.name: layer.maps for layer in cams.layers}
        draw = lambda: cam_panel(cams, views, look, model.label)  # noqa: E731
    else:
        compute = compute_input_attributions if isinstance(plan, InputPlan) else compute_gradients
        result = maps = compute(model, batch, plan, inputs=inputs)  # type: ignore[arg-type]
        arrays = {"values": maps.values}
        draw = lambda: gradient_panel(maps, views, look, model.label)  # noqa: E731
    if fmt != "npy":
        picture = np.ascontiguousarray(draw())
        return Answer(result, encode.png_bytes(picture), encode.PNG_MEDIA_TYPE)
    shaped = {name: _per_request_shape(v, result.several_targets) for name, v in arrays.items()}
    if len(shaped) == 1:
        return Answer(result, encode.npy_bytes(*shaped.values()), encode.NPY_MEDIA_TYPE)
    return Answer(result, encode.npz_bytes(shaped), encode.NPZ_MEDIA_TYPE)
