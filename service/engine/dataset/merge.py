"""The slices of a dataset analysis, merged: counts and tallies add up, the features are
gathered in slice order and projected once (so that the points equal one pass's, given the
seed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_registry.datasets import Dataset
from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from service.engine.dataset.plan import AnalysisPlan, minimum_images
from service.engine.dataset.results import DatasetAnalysis, Skipped
from service.engine.dataset.tally import LayerTally
from service.engine.insight.embedding import EmbeddingPlan, project
from service.engine.partials import Partial, concat


def edges_of(prelude: Partial, row: int) -> tuple[float, float]:
    """The histogram edges the prelude fixed for the plan's `row`-th layer."""
    return float(prelude["edges"][row, 0]), float(prelude["edges"][row, 1])


def _layer_state(partial: Partial, row: int) -> Partial:
    prefix = f"layer{row}."
    return {k[len(prefix) :]: v for k, v in partial.items() if k.startswith(prefix)}


def merge_analysis(
    model: LoadedModel,
    dataset: Dataset,
    plan: AnalysisPlan,
    partials: Sequence[Partial],
    prelude: Partial,
) -> DatasetAnalysis:
    """The slices' partials (in slice order) -> the analysis of the whole plan: counts and
    tallies add up, features are gathered and projected once."""
    kept = concat(partials, "indices", empty=np.zeros(0, np.int64))
    skipped = tuple(
        Skipped(int(i), str(r))
        for p in partials
        for i, r in zip(p["skipped"], p["reasons"], strict=True)
    )
    if len(kept) < minimum_images(plan.method):
        raise InvalidInput(
            f"dataset: only {len(kept)} of {len(plan.indices)} pictures could be read; "
            f"{plan.method} needs at least {minimum_images(plan.method)}",
            field="dataset",
            skipped=len(skipped),
        )
    pooled = np.concatenate([p["features"] for p in partials if len(p["indices"])])
    embedding_plan = EmbeddingPlan(
        plan.embedding_layer, "output", 1, plan.method, plan.seed, plan.perplexity, len(kept)
    )
    embedding = project(pooled, embedding_plan)
    summaries = []
    for i, name in enumerate(plan.layers):
        tally = LayerTally(name, model.catalog.get(name).type, edges_of(prelude, i))
        for p in partials:
            tally.absorb(
                {k.split(".", 1)[1]: v for k, v in p.items() if k.startswith(f"layer{i}.")}
            )
        summaries.append(tally.summary())
    predicted = concat(partials, "predicted", empty=np.zeros(0, np.int64))
    mapped = len(kept) > 0 and len(predicted) == len(kept)
    return DatasetAnalysis(
        classes=dataset.classes,
        indices=kept,
        labels=concat(partials, "labels", empty=np.zeros(0, np.int64)),
        predicted=predicted if mapped else None,
        probability=concat(partials, "probability", empty=np.zeros(0, np.float32))
        if mapped
        else None,
        skipped=skipped,
        layers=tuple(s for s in summaries if s is not None),
        points=embedding.points,
        feature_dim=embedding.feature_dim,
    )
