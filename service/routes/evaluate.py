"""Explanations evaluated: metrics per picture for a batch, and over a dataset as a job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import Field

from api_schemas import evaluation as schemas
from model_registry.datasets import Dataset, DatasetCatalog, has_masks, is_reference
from model_registry.errors import InvalidInput, NotFound
from model_registry.registry import LoadedModel
from model_registry.spec import CLASSIFICATION
from service.engine.attribution.target_requests import parse_request
from service.engine.evaluation.dataset_run import MAX_LIMIT, class_map, pick_indices
from service.engine.evaluation.plan import (
    EvalPlan,
    plan_evaluation,
    require_classifier,
    split_options,
)
from service.engine.partials import Partial
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.jobs.shards import ShardedWork
from service.routes import common
from service.routes import evaluation_answers as answers
from service.routes.attribution_options import Box, Detection, Region, Target
from service.routes.deps import DatasetsDep, ImagesDep, ServingDep
from service.routes.options import Options, RunAsync, seed_field
from service.workers.evaluation_tasks import (
    Source,
    evaluate_merge_task,
    evaluate_pictures_task,
    evaluate_slice_task,
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
    region: Region = None
    box: Box = None
    detection: Detection = None
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
    # a region or box target is every picture's mask where its dataset has none
    masked = model.spec.task != CLASSIFICATION or all(
        s is not None and has_masks(s[0]) for s in sources
    )
    plan = _plan(request, model, options.methods, options.metrics, options.seed, masked)
    target = parse_request(
        model, options.target, region=options.region, box=options.box, detection=options.detection
    )
    if target.count != 1:
        field = "detection" if options.detection else "target"
        raise InvalidInput(
            f"{field}: an evaluation explains one target per image (a class, a region's class "
            "or a box); name one",
            field=field,
        )
    pixels = settings.max_image_pixels

    def work(_progress: Progress) -> Encoded:
        scores = evaluate_pictures_task(
            model, images, plan, target, sources=sources, max_pixels=pixels
        )
        body = answers.pictures_body(model, plan, scores)
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return await common.answer_or_job(
        serving, "evaluate", work, total=1, estimate_s=0.0, run_async=options.run_async
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
    require_classifier(model)
    found = datasets.get(dataset, field="dataset")
    plan = _plan(request, model, options.methods, options.metrics, options.seed, has_masks(found))
    indices = pick_indices(found, options.limit, options.seed)
    classes = class_map(model, found, options.target.value)
    work = evaluation_work(
        model,
        found,
        plan,
        indices,
        classes=classes,
        target=options.target,
        max_pixels=settings.max_image_pixels,
    )
    return await common.answer_dataset_job(serving, "evaluate_dataset", work)


def evaluation_work(
    model: LoadedModel,
    dataset: Dataset,
    plan: EvalPlan,
    indices: tuple[int, ...],
    *,
    classes: tuple[int, ...] | None,
    target: schemas.EvaluationTarget,
    max_pixels: int,
) -> ShardedWork:
    """The dataset evaluation in slices of the plan's pictures (`indices`, drawn before any
    slicing): each slice's per-picture values and counts, joined in slice order and
    summarised once (bootstrap seeded by the plan's seed, rankings) at the merge."""

    def run(part: Sequence[int], _prelude: Partial, progress: Progress) -> Partial:
        return evaluate_slice_task(
            model, dataset, plan, part, classes=classes, max_pixels=max_pixels, progress=progress
        )

    def merge(partials: list[Partial], _prelude: Partial) -> Encoded:
        scores, summary = evaluate_merge_task(model, plan, partials)
        body = answers.dataset_body(model, dataset.name, target, plan, scores, summary)
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return ShardedWork(indices, run, merge)
