"""Tasks that run in the pool: decode -> engine -> encode, one function per endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model_registry.registry import LoadedModel
from service.engine import encode
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
