"""The JSON answers of the evaluation routes, from the engine's results: per picture (one
value per image per method and metric) and over a dataset (the summary)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from api_schemas import evaluation as schemas
from model_registry.registry import LoadedModel
from service.engine.evaluation.dataset_run import DatasetScores
from service.engine.evaluation.metrics import Cascade
from service.engine.evaluation.plan import EvalPlan
from service.engine.evaluation.summary import RESAMPLES, Stat, Summary
from service.workers.evaluation_tasks import PictureScores


def number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def metric_info(plan: EvalPlan) -> dict[str, dict[str, Any]]:
    return {
        c.name: {
            "reference": c.metric.reference,
            "family": c.metric.family,
            "higher_is_better": c.metric.higher_is_better,
            "parameters": c.parameters,
        }
        for c in plan.metrics
    }


def _cascade(found: Cascade) -> dict[str, Any]:
    return {
        "layers": list(found.layers),
        "threshold": found.threshold,
        "similarity": [[number(v) for v in row] for row in found.similarity],
        "decorrelated_at": [int(v) if math.isfinite(v) else None for v in found.decorrelated_at],
    }


def pictures_body(
    model: LoadedModel, plan: EvalPlan, scores: PictureScores
) -> schemas.EvaluationResponse:
    return schemas.EvaluationResponse(
        model=model.name,
        images=len(scores.targets),
        targets=scores.targets.tolist(),
        metrics=metric_info(plan),
        methods=[
            schemas.MethodValues(
                method=e.method,
                parameters=e.parameters,
                metrics={
                    name: [number(v) for v in values]
                    for name, values in scores.values[e.method].items()
                },
                randomization=(
                    schemas.Cascade(**_cascade(scores.cascades[e.method]))
                    if e.method in scores.cascades
                    else None
                ),
            )
            for e in plan.explainers
        ],
    )


def _dataset_cascade(found: Cascade) -> schemas.DatasetCascade:
    with warnings.catch_warnings():  # a depth where every map is constant: null, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(found.similarity, axis=0) if found.similarity.size else []
    return schemas.DatasetCascade(**_cascade(found), mean_similarity=[number(v) for v in means])


def _summary(found: Stat) -> schemas.MetricSummary:
    return schemas.MetricSummary(
        mean=found.mean,
        std=found.std,
        ci95=None if found.ci95 is None else list(found.ci95),
        n=found.n,
        best=list(found.best),
        worst=list(found.worst),
    )


def dataset_body(
    model: LoadedModel,
    dataset: str,
    target: schemas.EvaluationTarget,
    plan: EvalPlan,
    scores: DatasetScores,
    summary: Summary,
) -> schemas.DatasetEvaluationResponse:
    mean_rank = summary.mean_rank
    return schemas.DatasetEvaluationResponse(
        model=model.name,
        dataset=dataset,
        target=target,
        seed=plan.seed,
        resamples=RESAMPLES,
        images=len(scores.indices),
        indices=scores.indices.tolist(),
        skipped=list(scores.skipped),
        without_mask=scores.without_mask,
        methods=[
            schemas.MethodSummary(
                method=e.method,
                parameters=e.parameters,
                mean_rank=mean_rank[e.method],
                metrics={name: _summary(s) for name, s in summary.stats[e.method].items()},
                randomization=(
                    _dataset_cascade(scores.cascades[e.method])
                    if e.method in scores.cascades
                    else None
                ),
            )
            for e in plan.explainers
        ],
        rankings=[
            schemas.MetricRanking(
                metric=r.metric,
                higher_is_better=r.higher_is_better,
                reference=next(c.metric.reference for c in plan.metrics if c.name == r.metric),
                methods=list(r.order),
            )
            for r in summary.rankings
        ],
        overall=sorted(
            (m for m, r in mean_rank.items() if r is not None), key=lambda m: mean_rank[m]
        ),
    )
