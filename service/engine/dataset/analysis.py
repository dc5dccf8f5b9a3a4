"""A model over a whole dataset, streamed in batches: predictions, per-layer statistics and
the pooled features of one layer, then a 2-D projection of those features.

Memory does not grow with the activations of the set: each layer's output is reduced inside
its forward hook (`tally.LayerTally`) and dropped; per picture only the label, the
prediction and the pooled feature vector ([C] floats) are kept. Runs on the device thread;
the projection is scikit-learn (numpy), no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from model_registry.datasets import Dataset
from model_registry.errors import ClientError, InvalidInput
from model_registry.registry import LoadedModel
from service.engine.capture import hooked
from service.engine.dataset.plan import AnalysisPlan, minimum_images
from service.engine.dataset.tally import LayerSummary, LayerTally
from service.engine.images import decode_image, preprocess
from service.engine.insight.embedding import EmbeddingPlan, project
from service.engine.insight.stats import as_channels_first
from service.engine.progress import Progress, no_progress

log = logging.getLogger("layerscope")


@dataclass(frozen=True)
class Skipped:
    index: int
    reason: str


@dataclass(frozen=True)
class DatasetAnalysis:
    """What the set showed.

    Attributes:
        indices: int64 [N], the dataset index of each analysed picture (skipped ones left out).
        labels: int64 [N], the true class (index into `classes`).
        predicted: int64 [N], the predicted class among `classes`, or None when the class
            names do not map to the model's labels.
        probability: float32 [N], the model's softmax probability of `predicted`.
        skipped: pictures that could not be read or decoded.
        layers: one summary per requested layer.
        points: float32 [N, 2], the projection of the pooled features.
        feature_dim: length of the pooled feature vector.
    """

    classes: tuple[str, ...]
    indices: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray | None
    probability: np.ndarray | None
    skipped: tuple[Skipped, ...]
    layers: tuple[LayerSummary, ...]
    points: np.ndarray
    feature_dim: int

    def confusion(self) -> np.ndarray | None:
        """int64 [C, C]: rows the true class, columns the predicted one."""
        if self.predicted is None:
            return None
        size = len(self.classes)
        flat = np.bincount(self.labels * size + self.predicted, minlength=size * size)
        return flat.reshape(size, size).astype(np.int64)

    def accuracy(self) -> float | None:
        if self.predicted is None:
            return None
        return float((self.labels == self.predicted).mean())

    def mistakes(self) -> list[tuple[int, int, int, float]]:
        """(dataset index, label, predicted, probability), most confident first."""
        if self.predicted is None or self.probability is None:
            return []
        wrong = np.flatnonzero(self.labels != self.predicted)
        order = wrong[np.argsort(-self.probability[wrong], kind="stable")]
        return [
            (
                int(self.indices[i]),
                int(self.labels[i]),
                int(self.predicted[i]),
                float(self.probability[i]),
            )
            for i in order
        ]


def _read(dataset: Dataset, index: int, max_pixels: int) -> Image.Image | Skipped:
    try:
        data = dataset.read(index)
        return decode_image(data, max_pixels=max_pixels, index=index, field=dataset.name)
    except (OSError, ClientError) as exc:
        # "pets[4] is not a decodable image", without the advice to the uploader.
        reason = exc.detail.split("; ")[0] if isinstance(exc, ClientError) else "unreadable file"
        log.warning("dataset %s: skipped %s: %s", dataset.name, dataset.describe(index), reason)
        return Skipped(index, reason)


class _Hooks:
    """Forward hooks that reduce each layer's last call per pass into its tally, and pool
    the embedding layer's output."""

    def __init__(self, model: LoadedModel, plan: AnalysisPlan) -> None:
        self.infos = {n: model.catalog.get(n) for n in {*plan.layers, plan.embedding_layer}}
        self.tallies = {n: LayerTally(n, self.infos[n].type) for n in plan.layers}
        self.embedding = plan.embedding_layer
        self.pooled: torch.Tensor | None = None
        self.seen = dict.fromkeys(self.infos, 0)

    def hooks(self) -> dict[str, Callable[[nn.Module, Any, Any], None]]:
        return {name: self._hook(name) for name in self.infos}

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        info = self.infos[name]

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.seen[name] += 1
            if self.seen[name] % info.calls or not isinstance(output, torch.Tensor):
                return
            values = as_channels_first(output, info.map_layout)
            if name in self.tallies:
                self.tallies[name].add(values)
            if name == self.embedding:
                self.pooled = values.float().mean(dim=tuple(range(2, values.ndim)))

        return hook


def analyse(
    model: LoadedModel,
    dataset: Dataset,
    plan: AnalysisPlan,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> DatasetAnalysis:
    """Stream the plan's pictures through the model, then project the pooled features.

    `progress(done, total)` counts pictures (read or skipped) after each batch and may raise
    `Cancelled` between batches. Run it on the model's device thread.
    """
    state = _Hooks(model, plan)
    kept: list[int] = []
    labels: list[int] = []
    features: list[np.ndarray] = []
    predicted: list[np.ndarray] = []
    probability: list[np.ndarray] = []
    skipped: list[Skipped] = []
    total = len(plan.indices)
    class_map = torch.tensor(plan.class_map, device=model.device) if plan.class_map else None
    for start in range(0, total, plan.batch_size):
        images = []
        for index in plan.indices[start : start + plan.batch_size]:
            picture = _read(dataset, index, max_pixels)
            if isinstance(picture, Skipped):
                skipped.append(picture)
                continue
            images.append(picture)
            kept.append(index)
            labels.append(dataset.label(index))
        if images:
            batch = preprocess(images, model.spec, model.device)
            with torch.inference_mode(), hooked(model.module, state.hooks()):
                output = model.module(batch)
                if state.pooled is None:
                    raise RuntimeError(f"layer {plan.embedding_layer!r} did not run")
                features.append(state.pooled.cpu().numpy().astype(np.float32))
                state.pooled = None
                if class_map is not None and _is_logits(output, model):
                    chances = output.float().softmax(dim=1)[:, class_map]
                    best, which = chances.max(dim=1)
                    predicted.append(which.cpu().numpy().astype(np.int64))
                    probability.append(best.cpu().numpy().astype(np.float32))
        progress(min(start + plan.batch_size, total), total)
    return _finish(dataset, plan, state, kept, labels, features, predicted, probability, skipped)


def _is_logits(output: Any, model: LoadedModel) -> bool:
    return (
        isinstance(output, torch.Tensor)
        and output.ndim == 2
        and output.shape[1] == model.spec.num_classes
    )


def _finish(
    dataset: Dataset,
    plan: AnalysisPlan,
    state: _Hooks,
    kept: list[int],
    labels: list[int],
    features: list[np.ndarray],
    predicted: list[np.ndarray],
    probability: list[np.ndarray],
    skipped: list[Skipped],
) -> DatasetAnalysis:
    if len(kept) < minimum_images(plan.method):
        raise InvalidInput(
            f"dataset: only {len(kept)} of {len(plan.indices)} pictures could be read; "
            f"{plan.method} needs at least {minimum_images(plan.method)}",
            field="dataset",
            skipped=len(skipped),
        )
    pooled = np.concatenate(features)
    embedding_plan = EmbeddingPlan(
        plan.embedding_layer, "output", 1, plan.method, plan.seed, plan.perplexity, len(kept)
    )
    embedding = project(pooled, embedding_plan)
    summaries = (state.tallies[n].summary() for n in plan.layers)
    mapped = len(predicted) > 0 and sum(len(p) for p in predicted) == len(kept)
    return DatasetAnalysis(
        classes=dataset.classes,
        indices=np.asarray(kept, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64),
        predicted=np.concatenate(predicted) if mapped else None,
        probability=np.concatenate(probability) if mapped else None,
        skipped=tuple(skipped),
        layers=tuple(s for s in summaries if s is not None),
        points=embedding.points,
        feature_dim=embedding.feature_dim,
    )
