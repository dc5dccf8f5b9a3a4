"""Tasks that run in the pool: decode -> engine -> encode, one function per endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

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
from service.engine.feature_maps import FeatureMapPlan, FeatureMaps, compute_feature_maps, render_feature_maps
from service.engine.images import decode_image, denormalize, preprocess
from service.engine.predict import Prediction, predict
from service.engine.render import RenderOptions


@dataclass(frozen=True)
class FeatureMapAnswer:
    """Encoded bytes for png/npy/npz; for json the png plus the arrays' metadata."""

    maps: FeatureMaps
    body: bytes
    media_type: str


def decode_batch(model: LoadedModel, uploads: Sequence[bytes], *, max_pixels: int) -> torch.Tensor:
    images = [decode_image(data, max_pixels=max_pixels, index=i) for i, data in enumerate(uploads)]
    return preprocess(images, model.spec, model.device)


def predict_job(model: LoadedModel, uploads: Sequence[bytes], *, top_k: int, max_pixels: int) -> list[list[Prediction]]:
    return predict(model, decode_batch(model, uploads, max_pixels=max_pixels), top_k)


def feature_maps_job(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: FeatureMapPlan,
    *,
    fmt: str,
    options: RenderOptions,
    max_pixels: int,
) -> FeatureMapAnswer:
    batch = decode_batch(model, uploads, max_pixels=max_pixels)
    maps = compute_feature_maps(model, batch, plan, inputs=denormalize(batch, model.spec))
    if fmt == "npy":
        if len(maps.layers) == 1:
            return FeatureMapAnswer(maps, encode.npy_bytes(maps.layers[0].values), encode.NPY_MEDIA_TYPE)
        arrays = {layer.name: layer.values for layer in maps.layers}
        return FeatureMapAnswer(maps, encode.npz_bytes(arrays), encode.NPZ_MEDIA_TYPE)
    picture = render_feature_maps(maps, options)
    return FeatureMapAnswer(maps, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE)


@dataclass(frozen=True)
class CamAnswer:
    """Encoded bytes for png/npy/npz; for json the png plus the result for the metadata."""

    result: CamResult
    body: bytes
    media_type: str


@dataclass(frozen=True)
class GradientAnswer:
    result: GradientResult
    body: bytes
    media_type: str


def _per_request_shape(values: np.ndarray, several_targets: bool) -> np.ndarray:
    """[B, T, ...] -> [B, ...] when a single target (or the default top-1) was asked for."""
    return values if several_targets else values[:, 0]


def cam_job(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: CamPlan,
    *,
    fmt: str,
    look: Look,
    max_pixels: int,
) -> CamAnswer:
    batch = decode_batch(model, uploads, max_pixels=max_pixels)
    result = compute_cam(model, batch, plan, inputs=denormalize(batch, model.spec))
    if fmt == "npy":
        several = result.several_targets
        arrays = {layer.name: _per_request_shape(layer.maps, several) for layer in result.layers}
        if len(arrays) == 1:
            (values,) = arrays.values()
            return CamAnswer(result, encode.npy_bytes(values), encode.NPY_MEDIA_TYPE)
        return CamAnswer(result, encode.npz_bytes(arrays), encode.NPZ_MEDIA_TYPE)
    picture = cam_panel(result, look, model.label)
    return CamAnswer(result, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE)


def gradients_job(
    model: LoadedModel,
    uploads: Sequence[bytes],
    plan: GradientPlan,
    *,
    fmt: str,
    look: Look,
    max_pixels: int,
) -> GradientAnswer:
    batch = decode_batch(model, uploads, max_pixels=max_pixels)
    result = compute_gradients(model, batch, plan, inputs=denormalize(batch, model.spec))
    if fmt == "npy":
        values = _per_request_shape(result.values, result.several_targets)
        return GradientAnswer(result, encode.npy_bytes(values), encode.NPY_MEDIA_TYPE)
    picture = gradient_panel(result, look, model.label)
    body = encode.png_bytes(np.ascontiguousarray(picture))
    return GradientAnswer(result, body, encode.PNG_MEDIA_TYPE)
