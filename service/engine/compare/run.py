"""Two models over the same pictures of a dataset, streamed in batches: CKA between their
layers, both predictions per picture and the drift of layers they share.

Each model sees the pictures through its own preprocessing. Per batch, each layer's output
is pooled inside its forward hook; with pool=mean and linear CKA only the running products
are kept (`StreamingCka`), otherwise the pooled features of every picture (bounded by the
plan's memory cap). Runs on the device thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from model_registry.datasets import Dataset
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.capture import hooked
from service.engine.compare.cka import StreamingCka, gram, gram_cka
from service.engine.compare.outcome import Comparison, Side
from service.engine.compare.plan import ComparePlan
from service.engine.dataset.pictures import picture_batches
from service.engine.images import preprocess
from service.engine.insight.stats import as_channels_first
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


def compare(
    model_a: LoadedModel,
    model_b: LoadedModel,
    dataset: Dataset,
    plan: ComparePlan,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Comparison:
    """Stream the plan's pictures through both models. `progress(done, total)` counts
    pictures after each batch and may raise `Cancelled` between batches."""
    streaming = StreamingCka(list(plan.widths_a), list(plan.widths_b)) if plan.streaming else None
    kept_a: list[list[np.ndarray]] = [[] for _ in plan.layers_a]
    kept_b: list[list[np.ndarray]] = [[] for _ in plan.layers_b]
    drift: dict[str, list[np.ndarray]] = {name: [] for name in plan.drift}
    probs_a: list[np.ndarray] = []
    probs_b: list[np.ndarray] = []
    kept: list[int] = []
    total = len(plan.indices)
    for part in picture_batches(dataset, plan.indices, plan.batch_size, max_pixels):
        if part.images:
            images = part.images
            first = _forward(model_a, images, plan.layers_a, pool=plan.pool, keep=plan.drift)
            second = _forward(model_b, images, plan.layers_b, pool=plan.pool, keep=plan.drift)
            for name in plan.drift:
                drift[name].append(_drift(first.maps[name], second.maps[name]))
            if streaming is not None:
                streaming.add(first.features, second.features)
            else:
                for store, values in ((kept_a, first.features), (kept_b, second.features)):
                    for bucket, layer in zip(store, values, strict=True):
                        bucket.append(layer)
            if first.probabilities is not None:
                probs_a.append(first.probabilities)
            if second.probabilities is not None:
                probs_b.append(second.probabilities)
            kept.extend(part.indices)
        progress(part.end, total)
    if len(kept) < (4 if plan.debiased else 2):
        raise InvalidInput(
            f"dataset: only {len(kept)} of {total} pictures could be read", field="dataset"
        )
    if streaming is not None:
        matrix = streaming.matrix()
    else:
        grams_a = [gram(np.concatenate(parts)) for parts in kept_a]
        grams_b = [gram(np.concatenate(parts)) for parts in kept_b]
        matrix = gram_cka(grams_a, grams_b, debiased=plan.debiased)
    labels = np.asarray([dataset.label(i) for i in kept], dtype=np.int64)
    return Comparison(
        classes=dataset.classes,
        indices=np.asarray(kept, dtype=np.int64),
        labels=labels,
        cka=matrix,
        a=Side.of(model_a, dataset.classes, plan.class_map_a, probs_a, len(kept)),
        b=Side.of(model_b, dataset.classes, plan.class_map_b, probs_b, len(kept)),
        drift={name: float(np.nanmean(np.concatenate(parts))) for name, parts in drift.items()},
    )
