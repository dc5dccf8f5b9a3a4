"""Explanations evaluated: metrics per picture for a batch, and over a dataset as a job."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import Field

from api_schemas import evaluation as schemas
from model_registry.datasets import DatasetCatalog, has_masks, is_reference
from model_registry.errors import InvalidInput, NotFound
from model_registry.registry import LoadedModel
from service.engine.attribution.target_requests import parse_request
from service.engine.evaluation.dataset_run import MAX_LIMIT, class_map, pick_indices
from service.engine.evaluation.plan import EvalPlan, plan_evaluation, split_options
from service.engine.evaluation.summary import RESAMPLES, Stat, rankings, stat
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.routes import common
from service.routes.attribution_options import Target
from service.routes.deps import DatasetsDep, ImagesDep, ServingDep
from service.routes.options import Options, RunAsync, seed_field
from service.workers.evaluation_tasks import (
    PictureScores,
    Source,
    evaluate_dataset_task,
    evaluate_pictures_task,
)

router = APIRouter(prefix="/v1/models", tags=["evaluation"])

_OPTIONS = (
    "; each method's and metric's own parameters as options.<name>.<parameter>=value "
    "(GET /v1/methods, docs/evaluation.md)"
)
DatasetPath = Annotated[
    str, PathParam(description="a dataset name from GET /v1/datasets", max_length=128)
]


class EvaluateOptions(Options):
    answer_fields = frozenset({"run_async"})
    methods: str = Field(
        description="methods of /cam or /attributions, comma-separated" + _OPTIONS,
        max_length=1024,
    )
    metrics: str = Field(
        description="metrics, comma-separated (docs/evaluation.md)", max_length=1024
    )
    target: Target = None
    seed: int = seed_field("random state of every metric's draws (noise, perturbations)")
    run_async: RunAsync = None


class DatasetEvaluateOptions(Options):
    methods: str = Field(
        description="methods of /cam or /attributions, comma-separated" + _OPTIONS,
        max_length=1024,
    )
    metrics: str = Field(
        description="metrics, comma-separated (docs/evaluation.md)", max_length=1024
    )
    target: schemas.EvaluationTarget = Field(
        schemas.EvaluationTarget.predicted,
        description="the class explained: each picture's top-1 class, or its dataset label",
    )
    limit: int | None = Field(
        None,
        ge=1,
        le=MAX_LIMIT,
        description=f"evaluate a random sample of this many pictures (drawn with seed); "
        f"default: all, up to {MAX_LIMIT}",
    )
    seed: int = seed_field("random state of the sample, the metrics and the bootstrap")


def _plan(
    request: Request, model: LoadedModel, methods: str, metrics: str, seed: int, masks: bool
) -> EvalPlan:
    return plan_evaluation(
        model,
        methods=common.split_names(methods),
        metrics=common.split_names(metrics),
        options=split_options(request.query_params.multi_items()),
        seed=seed,
        masks=masks,
    )


def _sources(request: Request, datasets: DatasetCatalog, count: int) -> list[Source]:
    """Each picture's dataset and index, in the order `read_images` gives the pictures."""
    params = request.query_params
    refs = common.split_names(",".join(params.getlist("image")))
    ids = common.split_names(",".join(params.getlist("image_id")))
    uploads: list[Source] = [None] * (count - len(refs) - len(ids))
    named: list[Source] = [datasets.resolve(ref) for ref in refs]
    stored: list[Source] = [
        datasets.resolve(i, field="image_id") if is_reference(i) else None for i in ids
    ]
    return uploads + named + stored


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _metric_info(plan: EvalPlan) -> dict[str, dict[str, Any]]:
    return {
        c.name: {
            "reference": c.metric.reference,
            "family": c.metric.family,
            "higher_is_better": c.metric.higher_is_better,
            "parameters": c.parameters,
        }
        for c in plan.metrics
    }


@router.post(
    "/{model}/evaluate",
    response_model=None,
    responses={
        **common.answers(
            "per method and metric one value per image",
            common.JSON_MEDIA_TYPE,
            body=schemas.EvaluationResponse,
            errors=(*common.MODEL_ERRORS, *common.IMAGE_ERRORS, *common.DEVICE_ERRORS),
        ),
        **common.JOB_ACCEPTED,
        **common.error_responses(*common.JOB_ERRORS),
    },
)
async def evaluate(
    serving: ServingDep,
    images: ImagesDep,
    datasets: DatasetsDep,
    options: Annotated[EvaluateOptions, Query()],
) -> Response:
    """Score explanation methods on pictures: every metric, one value per picture."""
    model, settings, request = serving.model, serving.settings, serving.request
    if request is None:  # routes always have one; a replayed job carries its own
        raise InvalidInput("request: missing", field="request")
    sources = _sources(request, datasets, len(images))
    masked = all(s is not None and has_masks(s[0]) for s in sources)
    plan = _plan(request, model, options.methods, options.metrics, options.seed, masked)
    target = parse_request(model, options.target)
    if target.count != 1:
        raise InvalidInput(
            "target: an evaluation explains one class per image; name one", field="target"
        )
    pixels = settings.max_image_pixels

    def work(_progress: Progress) -> Encoded:
        scores = evaluate_pictures_task(
            model, images, plan, target, sources=sources, max_pixels=pixels
        )
        body = _pictures_body(model, plan, scores)
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return await common.answer_or_job(
        serving, "evaluate", work, total=1, estimate_s=0.0, run_async=options.run_async
    )


def _pictures_body(
    model: LoadedModel, plan: EvalPlan, scores: PictureScores
) -> schemas.EvaluationResponse:
    return schemas.EvaluationResponse(
        model=model.name,
        images=len(scores.targets),
        targets=scores.targets.tolist(),
        metrics=_metric_info(plan),
        methods=[
            schemas.MethodValues(
                method=e.method,
                parameters=e.parameters,
                metrics={
                    name: [_number(v) for v in values]
                    for name, values in scores.values[e.method].items()
                },
            )
            for e in plan.explainers
        ],
    )


@router.post(
    "/{model}/datasets/{dataset}/evaluate",
    status_code=202,
    response_model=None,
    responses={
        **common.JOB_ACCEPTED,
        **common.error_responses(NotFound, *common.MODEL_ERRORS, *common.JOB_ERRORS),
    },
)
async def evaluate_dataset(
    serving: ServingDep,
    datasets: DatasetsDep,
    dataset: DatasetPath,
    options: Annotated[DatasetEvaluateOptions, Query()],
) -> Response:
    """Score explanation methods over a dataset as a job: mean, std and bootstrap interval per
    method and metric, rankings, best and worst pictures (result at /v1/jobs/{id}/result)."""
    model, settings, request = serving.model, serving.settings, serving.request
    if request is None:
        raise InvalidInput("request: missing", field="request")
    found = datasets.get(dataset, field="dataset")
    plan = _plan(request, model, options.methods, options.metrics, options.seed, has_masks(found))
    indices = pick_indices(found, options.limit, options.seed)
    classes = class_map(model, found, options.target.value)
    pixels = settings.max_image_pixels

    def work(progress: Progress) -> Encoded:
        scores = evaluate_dataset_task(
            model, found, plan, indices, classes=classes, max_pixels=pixels, progress=progress
        )
        stats = {
            e.method: {
                c.name: stat(
                    scores.values[e.method][c.name],
                    scores.indices,
                    higher_is_better=c.metric.higher_is_better,
                    seed=plan.seed,
                )
                for c in plan.metrics
            }
            for e in plan.explainers
        }
        better = {c.name: c.metric.higher_is_better for c in plan.metrics}
        ranked, mean_rank = rankings(stats, better)
        body = schemas.DatasetEvaluationResponse(
            model=model.name,
            dataset=found.name,
            target=options.target,
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
                    metrics={name: _summary(s) for name, s in stats[e.method].items()},
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
                for r in ranked
            ],
            overall=sorted(
                (m for m, r in mean_rank.items() if r is not None), key=lambda m: mean_rank[m]
            ),
        )
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return await common.answer_or_job(
        serving, "evaluate_dataset", work, total=len(indices), estimate_s=0.0, run_async=True
    )


def _summary(found: Stat) -> schemas.MetricSummary:
    return schemas.MetricSummary(
        mean=found.mean,
        std=found.std,
        ci95=None if found.ci95 is None else list(found.ci95),
        n=found.n,
        best=list(found.best),
        worst=list(found.worst),
    )
