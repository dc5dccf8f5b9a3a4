"""A model over a whole dataset, streamed in batches: predictions, per-layer statistics and
the pooled features of one layer, then a 2-D projection of those features.

Memory does not grow with the activations of the set: each layer's output is reduced inside
its forward hook (`tally.LayerTally`) and dropped; per picture only the label, the
prediction and the pooled feature vector ([C] floats) are kept. Runs on the device thread;
the projection is scikit-learn (numpy), no torch.

In slices: `analysis_prelude` fixes the histogram edges from the first batch,
`analyse_slice` runs any slice of the pictures to a `Partial`, and `merge_analysis` adds the
slices up and projects the gathered features once, so slices run by different replicas give
the answer of one pass (`analyse`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from model_registry.datasets import Dataset
from model_registry.errors import ClientError
from model_registry.registry import LoadedModel
from service.engine.capture import hooked
from service.engine.dataset.merge import edges_of, merge_analysis
from service.engine.dataset.plan import AnalysisPlan
from service.engine.dataset.results import DatasetAnalysis, Skipped
from service.engine.dataset.tally import LayerTally, first_edges
from service.engine.images import decode_image, preprocess
from service.engine.insight.stats import as_channels_first
from service.engine.partials import Partial
from service.engine.progress import Progress, no_progress

log = logging.getLogger("layerscope")
Hook = Callable[[nn.Module, Any, Any], None]


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
    the embedding layer's output (or, for the prelude, keep each layer's first edges)."""

    def __init__(
        self, model: LoadedModel, plan: AnalysisPlan, prelude: Partial | None = None
    ) -> None:
        self.infos = {n: model.catalog.get(n) for n in {*plan.layers, plan.embedding_layer}}
        self.tallies = {
            n: LayerTally(n, self.infos[n].type, None if prelude is None else edges_of(prelude, i))
            for i, n in enumerate(plan.layers)
        }
        self.embedding = plan.embedding_layer
        self.pooled: torch.Tensor | None = None
        self.first: dict[str, tuple[float, float]] = {}
        self.seen = dict.fromkeys(self.infos, 0)

    def hooks(
        self, *, edges_only: bool = False
    ) -> dict[str, Callable[[nn.Module, Any, Any], None]]:
        return {name: self._hook(name, edges_only) for name in self.infos}

    def _hook(self, name: str, edges_only: bool) -> Hook:
        info = self.infos[name]

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.seen[name] += 1
            if self.seen[name] % info.calls or not isinstance(output, torch.Tensor):
                return
            values = as_channels_first(output, info.map_layout)
            if edges_only:
                if name in self.tallies:
                    self.first[name] = first_edges(values.detach().float())
                return
            if name in self.tallies:
                self.tallies[name].add(values)
            if name == self.embedding:
                self.pooled = values.float().mean(dim=tuple(range(2, values.ndim)))

        return hook


def _batches(
    dataset: Dataset, indices: Sequence[int], batch_size: int, max_pixels: int
) -> Iterator[tuple[list[int], list[Image.Image], list[Skipped]]]:
    """(indices read, their pictures, those skipped) per batch of `indices`."""
    for start in range(0, len(indices), batch_size):
        kept, images, skipped = [], [], []
        for index in indices[start : start + batch_size]:
            picture = _read(dataset, index, max_pixels)
            if isinstance(picture, Skipped):
                skipped.append(picture)
            else:
                kept.append(index)
                images.append(picture)
        yield kept, images, skipped


def analysis_prelude(
    model: LoadedModel, dataset: Dataset, plan: AnalysisPlan, *, max_pixels: int
) -> Partial:
    """What every slice must agree on: each layer's histogram edges, fixed by the first
    batch with a readable picture (as one pass over the whole set fixes them)."""
    state = _Hooks(model, plan)
    for _kept, images, _skipped in _batches(dataset, plan.indices, plan.batch_size, max_pixels):
        if images:
            batch = preprocess(images, model.spec, model.device)
            with torch.inference_mode(), hooked(model.module, state.hooks(edges_only=True)):
                model.module(batch)
            break
    default = (0.0, 1.0)  # a layer that never runs never uses its edges
    return {"edges": np.asarray([state.first.get(n, default) for n in plan.layers])}


def analyse_slice(
    model: LoadedModel,
    dataset: Dataset,
    plan: AnalysisPlan,
    indices: Sequence[int],
    prelude: Partial,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> Partial:
    """Stream `indices` (a slice of the plan's pictures) through the model.

    `progress(done, len(indices))` counts pictures (read or skipped) after each batch and may
    raise `Cancelled` between batches. Run it on the model's device thread.
    """
    state = _Hooks(model, plan, prelude)
    kept: list[int] = []
    features: list[np.ndarray] = []
    predicted: list[np.ndarray] = []
    probability: list[np.ndarray] = []
    skipped: list[Skipped] = []
    class_map = torch.tensor(plan.class_map, device=model.device) if plan.class_map else None
    done = 0
    for read, images, missed in _batches(dataset, indices, plan.batch_size, max_pixels):
        kept += read
        skipped += missed
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
        done += len(read) + len(missed)
        progress(done, len(indices))
    partial: Partial = {
        "indices": np.asarray(kept, dtype=np.int64),
        "labels": np.asarray([dataset.label(i) for i in kept], dtype=np.int64),
        "features": np.concatenate(features) if features else np.zeros((0, 0), np.float32),
        "predicted": np.concatenate(predicted) if predicted else np.zeros(0, np.int64),
        "probability": np.concatenate(probability) if probability else np.zeros(0, np.float32),
        "skipped": np.asarray([s.index for s in skipped], dtype=np.int64),
        "reasons": np.asarray([s.reason for s in skipped], dtype=np.str_),
    }
    for i, name in enumerate(plan.layers):
        partial.update({f"layer{i}.{k}": v for k, v in state.tallies[name].state().items()})
    return partial


def analyse(
    model: LoadedModel,
    dataset: Dataset,
    plan: AnalysisPlan,
    *,
    max_pixels: int,
    progress: Progress = no_progress,
) -> DatasetAnalysis:
    """The whole plan in one pass: the prelude, one slice of every picture, the merge."""
    prelude = analysis_prelude(model, dataset, plan, max_pixels=max_pixels)
    whole = analyse_slice(
        model, dataset, plan, plan.indices, prelude, max_pixels=max_pixels, progress=progress
    )
    return merge_analysis(model, dataset, plan, [whole], prelude)


def _is_logits(output: Any, model: LoadedModel) -> bool:
    return (
        isinstance(output, torch.Tensor)
        and output.ndim == 2
        and output.shape[1] == model.spec.num_classes
    )
