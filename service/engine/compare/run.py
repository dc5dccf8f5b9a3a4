"""Two models over the same pictures of a dataset, streamed in batches: CKA between their
layers, both predictions per picture and the drift of layers they share.

Each model sees the pictures through its own preprocessing. Per batch, each layer's output
is pooled inside its forward hook; with pool=mean and linear CKA only the running products
are kept (`StreamingCka`), otherwise the pooled features of every picture (bounded by the
plan's memory cap). A job runs this over slices of the pictures, perhaps on several
replicas, and merges their partials (`shards`). Runs on the device thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from model_registry.datasets import Dataset
from model_registry.registry import LoadedModel
from service.engine.capture import hooked
from service.engine.compare.outcome import Comparison
from service.engine.compare.plan import ComparePlan
from service.engine.compare.shards import Tally, merge
from service.engine.dataset.pictures import picture_batches
from service.engine.images import preprocess
from service.engine.insight.stats import as_channels_first
from service.engine.partials import Partial
from service.engine.progress import Progress, no_progress


@dataclass
class _Pass:
    """What one model's forward pass over one batch left behind."""

    features: list[np.ndarray]
    maps: dict[str, torch.Tensor]
    probabilities: np.ndarray | None


def _forward(
    model: LoadedModel,
    images: list[Image.Image],
    layers: tuple[str, ...],
    *,
    pool: str,
    keep: tuple[str, ...],
) -> _Pass:
    """One batch through `model`: each layer's last call per pass, pooled, and the whole
    maps of the `keep` layers; softmax probabilities when the output is logits."""
    infos = {name: model.catalog.get(name) for name in layers}
    seen = dict.fromkeys(layers, 0)
    pooled: dict[str, np.ndarray] = {}
    maps: dict[str, torch.Tensor] = {}

    def hook_for(name: str) -> Callable[[nn.Module, Any, Any], None]:
        info = infos[name]

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            seen[name] += 1
            if seen[name] % info.calls or not isinstance(output, torch.Tensor):
                return
            values = as_channels_first(output, info.map_layout).float()
            if values.ndim == 2:  # a vector output reads as a [C, 1, 1] map
                values = values[:, :, None, None]
            if name in keep:
                maps[name] = values.flatten(1).clone()
            reduced = values.mean(dim=(2, 3)) if pool == "mean" else values.flatten(1)
            pooled[name] = reduced.cpu().numpy().astype(np.float32)

        return hook

    batch = preprocess(images, model.spec, model.device)
    with torch.inference_mode(), hooked(model.module, {n: hook_for(n) for n in layers}):
        output = model.module(batch)
    missing = [name for name in layers if name not in pooled]
    if missing:
        raise RuntimeError(f"layers {missing} of model {model.name!r} did not run")
    probabilities = None
    logits = isinstance(output, torch.Tensor) and output.ndim == 2
    if logits and output.shape[1] == model.spec.num_classes:
        probabilities = output.float().softmax(dim=1).cpu().numpy()
    return _Pass([pooled[n] for n in layers], maps, probabilities)


def _drift(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Per picture ||a - b|| / ||a|| (NaN where a is all zero)."""
    change = torch.linalg.vector_norm(first - second, dim=1)
    base = torch.linalg.vector_norm(first, dim=1)
    return (change / base).cpu().numpy().astype(np.float64)


def compare_slice(
    model_a: LoadedModel,
    model_b: LoadedModel,
    dataset: Dataset,
    plan: ComparePlan,
    indices: Sequence[int],
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """Stream the pictures `indices` (a slice of the plan's) through both models: their
    partial (see `shards`), unreadable pictures counted as skipped. `progress(done, total)`
    counts the slice's pictures after each batch and may raise `Cancelled` between batches."""
    tally = Tally(plan)
    for part in picture_batches(dataset, indices, plan.batch_size, max_pixels):
        tally.skipped += part.end - part.start - len(part.indices)
        if part.images:
            images = part.images
            first = _forward(model_a, images, plan.layers_a, pool=plan.pool, keep=plan.drift)
            second = _forward(model_b, images, plan.layers_b, pool=plan.pool, keep=plan.drift)
            tally.add(
                part.indices,
                [dataset.label(i) for i in part.indices],
                (first.features, second.features),
                [_drift(first.maps[name], second.maps[name]) for name in plan.drift],
                (first.probabilities, second.probabilities),
            )
        progress(part.end, len(indices))
    return tally.partial()


def compare(
    model_a: LoadedModel,
    model_b: LoadedModel,
    dataset: Dataset,
    plan: ComparePlan,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Comparison:
    """The plan's pictures in one slice, merged: the comparison in one pass."""
    whole = compare_slice(
        model_a, model_b, dataset, plan, plan.indices, max_pixels=max_pixels, progress=progress
    )
    return merge([whole], plan, (model_a, model_b), dataset.classes)
