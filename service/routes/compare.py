"""Two models compared: over a dataset as a job (CKA between their layers, accuracy,
agreement, flips and drift)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import Field

from api_schemas import compare as schemas
from api_schemas.compare import TWO_NAMES
from model_registry.datasets import Dataset
from model_registry.errors import NotFound
from model_registry.registry import LoadedModel
from service.engine.compare.outcome import Comparison
from service.engine.compare.plan import ComparePlan, pick_models, plan_compare
from service.engine.compare.shards import merge as merge_comparison
from service.engine.partials import Partial
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.jobs.shards import ShardedWork
from service.routes import common
from service.routes.deps import (
    DatasetsDep,
    JobsDep,
    PoolDep,
    RegistryDep,
    Serving,
    SettingsDep,
)
from service.routes.options import Options, seed_field
from service.workers.compare_tasks import compare_slice_task

router = APIRouter(prefix="/v1/compare", tags=["compare"])

DatasetPath = Annotated[
    str, PathParam(description="a dataset name from GET /v1/datasets", max_length=128)
]


class CompareDatasetOptions(Options):
    models: str = Field(
        description="the two models to compare, comma-separated: a,b (GET /v1/models)",
        max_length=300,
        pattern=TWO_NAMES,
    )
    layers_a: str | None = Field(
        None,
        description="comma-separated layers of the first model; default: its top-level stages "
        "(resnet: layer1..layer4), or, for a flat model, its top-level modules with a map",
        max_length=4096,
    )
    layers_b: str | None = Field(
        None,
        description="comma-separated layers of the second model; default as layers_a",
        max_length=4096,
    )
    pool: schemas.Pool = Field(
        schemas.Pool.mean,
        description="mean: each map's spatial mean [n, C]; flatten: the whole map [n, C*H*W], "
        "within a memory cap of 1 GiB (422 beyond it, naming the cap and the size asked)",
    )
    debiased: bool = Field(
        False, description="the unbiased HSIC estimator (Nguyen et al. 2021); needs 4+ pictures"
    )
    limit: int | None = Field(
        None,
        ge=2,
        le=100_000,
        description="compare a random sample of this many pictures (drawn with seed); default: all",
    )
    seed: int = seed_field("random state of the sample")


def _layers(value: str | None) -> list[str] | None:
    return None if value is None else common.split_names(value)


@router.post(
    "/datasets/{dataset}",
    status_code=202,
    response_model=None,
    responses={
        **common.JOB_ACCEPTED,
        **common.error_responses(NotFound, *common.MODEL_ERRORS, *common.JOB_ERRORS),
    },
)
async def compare_datasets(
    request: Request,
    registry: RegistryDep,
    pool: PoolDep,
    jobs: JobsDep,
    settings: SettingsDep,
    datasets: DatasetsDep,
    dataset: DatasetPath,
    options: Annotated[CompareDatasetOptions, Query()],
) -> Response:
    """Compare two models over a dataset as a job: CKA between their layers, accuracy,
    agreement, per-class accuracy, flipped pictures and drift (result at /v1/jobs/{id}/result)."""
    model_a, model_b = pick_models(registry, common.split_names(options.models))
    found = datasets.get(dataset, field="dataset")
    plan = plan_compare(
        model_a,
        model_b,
        found,
        layers_a=_layers(options.layers_a),
        layers_b=_layers(options.layers_b),
        pool=options.pool.value,
        debiased=options.debiased,
        limit=options.limit,
        seed=options.seed,
    )
    sharded = compare_work(model_a, model_b, found, plan, max_pixels=settings.max_image_pixels)
    serving = Serving(model_a, pool, jobs, settings, request)
    with ExitStack() as admitted:
        for name in dict.fromkeys((model_a.name, model_b.name)):
            admitted.enter_context(pool.admission.enter(name))
        return await common.answer_dataset_job(serving, "compare_datasets", sharded)


def compare_work(
    model_a: LoadedModel,
    model_b: LoadedModel,
    dataset: Dataset,
    plan: ComparePlan,
    *,
    max_pixels: int,
) -> ShardedWork:
    """The comparison as shards of the plan's pictures: each slice through both models,
    the slices' partials merged into the JSON answer."""

    def run(indices: Sequence[int], _prelude: Partial, progress: Progress) -> Partial:
        return compare_slice_task(
            model_a, model_b, dataset, plan, indices, max_pixels=max_pixels, progress=progress
        )

    def merge(partials: list[Partial], _prelude: Partial) -> Encoded:
        result = merge_comparison(partials, plan, (model_a, model_b), dataset.classes)
        body = _response((model_a.name, model_b.name), plan, result)
        return Encoded(body.model_dump_json(by_alias=True).encode(), common.JSON_MEDIA_TYPE)

    return ShardedWork(plan.indices, run, merge)


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _response(
    models: tuple[str, str], plan: ComparePlan, result: Comparison
) -> schemas.CompareDatasetResponse:
    return schemas.CompareDatasetResponse(
        models=list(models),
        dataset=plan.dataset,
        pool=schemas.Pool(plan.pool),
        debiased=plan.debiased,
        images=len(result.indices),
        indices=result.indices.tolist(),
        cka=schemas.CkaMatrix(
            layers_a=list(plan.layers_a),
            layers_b=list(plan.layers_b),
            matrix=[[_number(v) for v in row] for row in result.cka],
        ),
        accuracy=[
            schemas.ModelAccuracy(model=name, accuracy=result.accuracy(side))
            for name, side in zip(models, (result.a, result.b), strict=True)
        ],
        agreement=result.agreement(),
        per_class=[
            schemas.ClassAccuracy.model_validate(
                {
                    "class": r.name,
                    "accuracy_a": r.accuracy_a,
                    "accuracy_b": r.accuracy_b,
                    "n": r.count,
                }
            )
            for r in result.per_class()
        ],
        flips=[schemas.Flip(**vars(flip)) for flip in result.flips()],
        drift=[
            schemas.LayerDrift(layer=name, drift=_number(value))
            for name, value in result.drift.items()
        ],
    )
