"""Work the pool runs: decode on CPU, batched forward passes on the device, encode on CPU.

Attribution and insight work live in `attribution_tasks` and `insight_tasks`."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from model_registry.registry import LoadedModel
from service.engine import encode
from service.engine.capture import capture
from service.engine.feature_maps import (
    FeatureMapPlan,
    FeatureMaps,
    capture_calls,
    maps_from_outputs,
    render_feature_maps,
)
from service.engine.images import decode_image, denormalize, preprocess
from service.engine.predict import Prediction, top_k_predictions
from service.engine.render import RenderOptions
from service.workers.answer import Answer
from service.workers.device_worker import BatchFn


def decode_batch(model: LoadedModel, uploads: Sequence[bytes], *, max_pixels: int) -> torch.Tensor:
    """Uploads -> the model's normalized input batch, on CPU (the device thread moves it)."""
    images = [decode_image(data, max_pixels=max_pixels, index=i) for i, data in enumerate(uploads)]
    return preprocess(images, model.spec, torch.device("cpu"))


def _split(batch: torch.Tensor, payloads: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(batch.split([p.shape[0] for p in payloads]))


def capture_work(model: LoadedModel, plan: FeatureMapPlan) -> tuple[Hashable, BatchFn]:
    """Batch key and batch function for capturing the plan's layers."""
    calls = capture_calls(model, plan)

    def execute(payloads: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        batch = torch.cat(payloads).to(model.device)
        outputs = {name: out.cpu() for name, out in capture(model.module, batch, calls).items()}
        per_layer = {name: _split(out, payloads) for name, out in outputs.items()}
        return [{name: parts[i] for name, parts in per_layer.items()} for i in range(len(payloads))]

    return ("capture", model.name, tuple(sorted(calls.items()))), execute


def logits_work(model: LoadedModel) -> tuple[Hashable, BatchFn]:
    """Batch key and batch function for a plain forward pass to the logits."""

    def execute(payloads: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.inference_mode():
            logits = model.module(torch.cat(payloads).to(model.device)).float().cpu()
        return _split(logits, payloads)

    return ("logits", model.name), execute


def feature_map_answer(
    model: LoadedModel,
    batch: torch.Tensor,
    outputs: dict[str, torch.Tensor],
    plan: FeatureMapPlan,
    *,
    fmt: str,
    options: RenderOptions,
) -> Answer[FeatureMaps]:
    """Select, reduce, render and encode captured outputs."""
    maps = maps_from_outputs(model, outputs, plan, inputs=denormalize(batch, model.spec))
    return encode_feature_maps(maps, fmt=fmt, options=options)


def encode_feature_maps(
    maps: FeatureMaps, *, fmt: str, options: RenderOptions
) -> Answer[FeatureMaps]:
    if fmt == "npy":
        if len(maps.layers) == 1:
            return Answer(maps, encode.npy_bytes(maps.layers[0].values), encode.NPY_MEDIA_TYPE)
        arrays = {layer.name: layer.values for layer in maps.layers}
        return Answer(maps, encode.npz_bytes(arrays), encode.NPZ_MEDIA_TYPE)
    picture = render_feature_maps(maps, options)
    return Answer(maps, encode.png_bytes(np.ascontiguousarray(picture)), encode.PNG_MEDIA_TYPE)


def predictions(model: LoadedModel, logits: torch.Tensor, *, top_k: int) -> list[list[Prediction]]:
    return top_k_predictions(logits, model, top_k)
