"""Score every method of a plan on one batch with every metric of the plan.

Each method's maps are computed once per batch and handed to every metric in an `EvalBatch`,
with what the metrics may ask for: the explained score (a class's logit, a region's or box's
score) on any input (no graph, in chunks that fit the memory budget), the method again on
other inputs (robustness), the method on the randomized cascade copies of the model
(randomisation) and the masks (localisation). Runs on the device thread; the shared model is
only read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from model_registry.registry import LoadedModel
from service.engine.attribution.chunks import rows_per_chunk
from service.engine.attribution.sanity import parametrized_layers
from service.engine.attribution.target_objects import (
    ClassTarget,
    Target,
    TargetRequest,
    concat_targets,
    take_targets,
)
from service.engine.evaluation.cascade import randomized_copies
from service.engine.evaluation.explainers import Explainer
from service.engine.evaluation.metrics import Cascade, EvalBatch
from service.engine.evaluation.plan import EvalPlan, MetricChoice

# method -> metric -> float64 values [B] (NaN where the metric has none for a picture)
Values = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class BatchScores:
    """A batch's values, and per method the randomization cascade's detail (similarity per
    depth, first decorrelated depth) when the plan has `randomization`."""

    values: Values
    cascades: dict[str, Cascade] = field(default_factory=dict)


class RandomizedCopies:
    """The model's cascade copies (`cascade.randomized_copies`): depth d has its top d
    parametrized layers re-initialized. One deep copy walks down the cascade; asking for a
    shallower depth than the last starts a new copy. The shared model is never touched."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.layers = tuple(parametrized_layers(model)[::-1])
        self._walk: Iterator[tuple[int, str, nn.Module]] | None = None
        self._depth = 0
        self._copy: LoadedModel | None = None

    def get(self, depth: int) -> LoadedModel:
        if self._walk is None or depth < self._depth or self._copy is None:
            self._walk = randomized_copies(self.model.module, self.layers)
            self._depth, self._copy = 0, None
        while self._depth < depth:
            self._depth, _, module = next(self._walk)
            self._copy = dataclasses.replace(self.model, module=module)
        if self._copy is None:
            raise ValueError(f"depth {depth}: the cascade starts at depth 1")
        return self._copy


def forward_fn(model: LoadedModel) -> Callable[[torch.Tensor], Any]:
    """The model's output for any batch of inputs, without a graph, in chunks of the memory
    budget: float logits of a classifier; a segmentation or detection model's own output
    (`dense.outputs` reads it), its chunks joined."""
    rows = rows_per_chunk(model, graph=False)

    def forward(inputs: torch.Tensor) -> Any:
        with torch.inference_mode():
            parts = [
                model.module(inputs[start : start + rows].to(model.device))
                for start in range(0, inputs.shape[0], rows)
            ]
        if not parts:
            return torch.empty(0)
        if isinstance(parts[0], torch.Tensor):
            return torch.cat(parts).float()
        return parts[0] if len(parts) == 1 else _joined(parts)

    return forward


def _joined(parts: list[Any]) -> Any:
    """Chunks of a dense model's output as one: a list of detections per image, or a mapping
    of per-image tensors (torchvision's {"out", "aux"})."""
    if isinstance(parts[0], Mapping):
        return {
            key: torch.cat([part[key] for part in parts])
            for key, value in parts[0].items()
            if isinstance(value, torch.Tensor)
        }
    return [item for part in parts for item in part]


def resolve_target(model: LoadedModel, request: TargetRequest, batch: torch.Tensor) -> Target:
    """`request` resolved on `batch` (a class, region or box per image), chunk by chunk
    without a graph, as /cam resolves it."""
    rows = rows_per_chunk(model, graph=False)
    parts = []
    with torch.no_grad():  # not inference mode: the targets' tensors meet graphs later
        for start in range(0, batch.shape[0], rows):
            chunk = batch[start : start + rows]
            output = model.module(chunk)
            output = output.float() if isinstance(output, torch.Tensor) else output
            parts.append(request.resolve(output, chunk))
    return concat_targets(parts)


def predicted(model: LoadedModel, batch: torch.Tensor) -> torch.Tensor:
    """Each picture's top-1 class, int64 [B]."""
    return forward_fn(model)(batch).argmax(dim=1)


def _batch(
    model: LoadedModel,
    explainer: Explainer,
    batch: torch.Tensor,
    target: Target,
    maps: np.ndarray,
    masks: np.ndarray | None,
    copies: RandomizedCopies,
    seed: int,
    keys: tuple[int, ...],
) -> EvalBatch:
    classes = target.classes[:, 0]
    by_class = isinstance(target, ClassTarget)

    def explain(inputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
        if by_class:
            return _numpy(explainer.maps(model, inputs, targets))
        # a region or box explains its own class: inputs are copies of the batch, sample-major
        # (`EvalBatch.explain`), so input n is a variant of image n % B, explained for its target
        images = torch.arange(inputs.shape[0], device=classes.device) % batch.shape[0]
        if not torch.equal(targets.to(classes.device).long(), classes[images].long()):
            raise ValueError("a region or box target explains only its own class")
        return _numpy(explainer.maps(model, inputs, take_targets(target, images)))

    def explain_randomized(depth: int) -> np.ndarray:
        return _numpy(explainer.maps(copies.get(depth), batch, target))

    return EvalBatch(
        inputs=batch,
        targets=classes,
        target=None if by_class else target,
        maps=maps,
        forward=forward_fn(model),
        explain=explain,
        explain_randomized=explain_randomized,
        randomizable=copies.layers,
        masks=masks,
        seed=seed,
        keys=keys,
        rows=rows_per_chunk(model, graph=False),
    )


def _numpy(maps: torch.Tensor) -> np.ndarray:
    return maps.detach().float().cpu().numpy().astype(np.float32, copy=False)


def _score(
    choice: MetricChoice, make: Callable[[np.ndarray], EvalBatch], has_mask: np.ndarray
) -> tuple[np.ndarray, Cascade | None]:
    """One metric's values [B] (a localisation metric only on the pictures with a mask), and
    randomization's whole `Cascade` (it needs no mask, so it covers every picture)."""
    count = has_mask.size
    rows = np.flatnonzero(has_mask) if choice.needs_masks else np.arange(count)
    out = np.full(count, np.nan)
    if not rows.size:
        return out, None
    found = choice.metric.compute(make(rows), choice.parameters)
    if isinstance(found, Cascade):  # its `values` are the per-image numbers
        out[rows] = found.values
        return out, found
    out[rows] = np.asarray(found, np.float64)
    return out, None


def evaluate_batch(
    model: LoadedModel,
    batch: torch.Tensor,
    targets: torch.Tensor | Target,
    plan: EvalPlan,
    *,
    masks: Sequence[np.ndarray | None] | None = None,
    copies: RandomizedCopies | None = None,
    keys: Sequence[int] | None = None,
) -> BatchScores:
    """Every method's values on every metric for `batch` [B, C, H, W] (normalized) and
    `targets`: a class per picture (int64 [B]), or a Target resolved on `batch` with one
    target per picture (a region or box); `masks` bool [H, W] per picture (None: that
    picture has none); `keys` each picture's key for its random draws (`EvalBatch.keys`;
    None: 0..B-1)."""
    copies = copies or RandomizedCopies(model)
    target = (
        targets
        if isinstance(targets, Target)
        else ClassTarget(targets.to(batch.device).long().view(-1, 1))
    )
    count = batch.shape[0]
    keyed = tuple(range(count)) if keys is None else tuple(int(k) for k in keys)
    given = list(masks) if masks is not None else [None] * count
    has_mask = np.asarray([m is not None for m in given], dtype=bool)
    stacked = None
    if has_mask.any():
        blank = np.zeros(batch.shape[-2:], dtype=bool)
        stacked = np.stack([blank if m is None else m for m in given])
    found: Values = {}
    cascades: dict[str, Cascade] = {}
    for explainer in plan.explainers:
        maps = _numpy(explainer.maps(model, batch, target))

        def make(
            rows: np.ndarray, maps: np.ndarray = maps, explainer: Explainer = explainer
        ) -> EvalBatch:
            if rows.size == count:
                return _batch(
                    model, explainer, batch, target, maps, stacked, copies, plan.seed, keyed
                )
            index = torch.from_numpy(rows).to(batch.device)
            return _batch(
                model,
                explainer,
                batch[index],
                take_targets(target, index),
                maps[rows],
                None if stacked is None else stacked[rows],
                copies,
                plan.seed,
                tuple(keyed[row] for row in rows),
            )

        found[explainer.method] = {}
        for choice in plan.metrics:
            values, cascade = _score(choice, make, has_mask)
            found[explainer.method][choice.name] = values
            if cascade is not None:
                cascades[explainer.method] = cascade
    return BatchScores(found, cascades)
