"""The trust checks of `/attributions`: deletion/insertion AUCs and the randomization check.

Every input-space method (gradient, perturbation, propagation) gets the same checks as
`/cam` and `/gradients`: its map is |values| summed over the input channels, scored by
`faithfulness.deletion_insertion` (classifiers only) and compared by Spearman rank
correlation with the same method's map on a copy of the model whose top `randomize`
layers are re-initialized (`sanity`), for the same targets and the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from model_registry.registry import LoadedModel
from service.engine.attribution.chunks import rows_per_chunk
from service.engine.attribution.explain import to_numpy
from service.engine.attribution.faithfulness import DEFAULT_STEPS, deletion_insertion
from service.engine.attribution.plan import check_metrics, check_randomize
from service.engine.attribution.sanity import randomized_copy, rank_correlation
from service.engine.attribution.target_objects import Target

# (a model, the fixed Target) -> that model's values [B, T, C, H, W] for the same request
Rerun = Callable[[LoadedModel, Target], torch.Tensor]


@dataclass(frozen=True)
class TrustRequest:
    """Validated trust options: metrics (deletion, insertion), curve points, layers to
    re-initialize (0: no sanity check)."""

    metrics: tuple[str, ...] = ()
    metric_steps: int = DEFAULT_STEPS
    randomize: int = 0


@dataclass(frozen=True)
class TrustResult:
    """AUCs and rank correlations float32 [B, T] (None when not asked)."""

    randomized: tuple[str, ...] = ()
    rank_correlation: np.ndarray | None = None
    deletion: np.ndarray | None = None
    insertion: np.ndarray | None = None


def check_trust(
    model: LoadedModel,
    *,
    metrics: list[str] | None = None,
    metric_steps: int = DEFAULT_STEPS,
    randomize: int = 0,
) -> TrustRequest:
    """As `/cam` checks them: known metrics, on classifiers only; steps and layers in range."""
    picked = check_metrics(model, metrics, metric_steps)
    return TrustRequest(picked, metric_steps, check_randomize(model, randomize))


def saliency(values: torch.Tensor) -> torch.Tensor:
    """[B, T, C, H, W] values -> [B, T, H, W] |values| summed over channels."""
    return values.abs().sum(dim=2)


def trust_checks(
    model: LoadedModel,
    batch: torch.Tensor,
    values: torch.Tensor,
    target: Target,
    request: TrustRequest,
    rerun: Rerun,
) -> TrustResult:
    """The checks `request` asks for, on the maps `values` of `target`."""
    if not request.metrics and not request.randomize:
        return TrustResult()
    maps = saliency(values)
    found: dict[str, np.ndarray] = {}
    if request.metrics:
        curves = deletion_insertion(
            model.module,
            batch,
            maps,
            target.classes,
            metrics=request.metrics,
            steps=request.metric_steps,
            rows=rows_per_chunk(model, graph=False),
        )
        found = {name: to_numpy(auc) for name, auc in curves.auc.items()}
    randomized: tuple[str, ...] = ()
    correlation = None
    if request.randomize:
        copy, names = randomized_copy(model, request.randomize)
        randomized = tuple(names)
        again = saliency(rerun(copy, target))
        correlation = rank_correlation(to_numpy(maps), to_numpy(again))
    return TrustResult(randomized, correlation, found.get("deletion"), found.get("insertion"))
