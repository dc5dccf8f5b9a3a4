"""Concepts of a layer (Deep Feature Factorization): for a request's pictures, and over a
dataset as a job."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import Field

from api_schemas.concepts import (
    Concept,
    ConceptClass,
    ConceptFormat,
    ConceptResponse,
    DatasetConcept,
    DatasetConceptResponse,
    Exemplar,
)
from model_registry.datasets import Dataset
from model_registry.errors import NotFound
from model_registry.registry import LoadedModel
from service.engine.concepts.dataset import (
    EXEMPLARS,
    DatasetConcepts,
    check_size,
    merge_concepts,
    sample_indices,
)
from service.engine.concepts.factorize import TOP, ConceptPlan, ConceptResult, K, plan_concepts
from service.engine.concepts.factorize import top_classes as ranked
from service.engine.encode import NPY_MEDIA_TYPE, PNG_MEDIA_TYPE
from service.engine.partials import Partial
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.jobs.shards import ShardedWork
from service.routes import common
from service.routes.deps import DatasetsDep, ImagesDep, ServingDep
from service.routes.options import Options, RunAsync, seed_field
from service.workers.concept_tasks import concepts_slice_task, concepts_task

router = APIRouter(prefix="/v1/models", tags=["concepts"])

_ANSWERS: dict[int | str, dict[str, Any]] = {
    **common.answers(
        "png: one colour per concept over each picture, with a legend of its top classes; "
        "npy: float32 heatmaps [B, K, H, W] on the model input, each in [0, 1]; "
        "json: the concepts' classes and strengths, and the png as base64",
        PNG_MEDIA_TYPE,
        NPY_MEDIA_TYPE,
        body=ConceptResponse,
        errors=(*common.MODEL_ERRORS, *common.IMAGE_ERRORS, *common.DEVICE_ERRORS),
    ),
    **common.JOB_ACCEPTED,
    **common.error_responses(*common.JOB_ERRORS),
}


class ConceptOptions(Options):
    answer_fields = frozenset({"fmt", "run_async"})
    layer: str | None = Field(
        None,
        description="a layer with channel maps (conv maps, ViT tokens); default: the deepest",
        max_length=256,
    )
    k: int = Field(4, **K.limits, description="concepts (NMF components); at most the channels")
    top: int = Field(3, **TOP.limits, description="classes listed per concept")
    fmt: ConceptFormat = Field(ConceptFormat.png, alias="format")
    run_async: RunAsync = None


def class_items(
    model: LoadedModel, result: ConceptResult | DatasetConcepts, top: int
) -> list[list[ConceptClass]] | None:
    """Per concept, its top classes as the answers list them (None without classes)."""
    if result.scores is None:
        return None
    return [
        [ConceptClass(class_index=c, label=model.label(c), score=p) for c, p in row]
        for row in ranked(result.scores, top)
    ]


def _body(
    model: LoadedModel, plan: ConceptPlan, result: ConceptResult, png: str
) -> ConceptResponse:
    classes = class_items(model, result, plan.top)
    strength = result.factorization.strength
    return ConceptResponse(
        model=model.name,
        layer=plan.layer,
        k=plan.k,
        batch=result.heatmaps.shape[0],
        shape=list(result.heatmaps.shape),
        classifier=None if result.scores is None else result.scores.classifier,
        classes_note=result.why,
        concepts=[
            Concept(
                concept=i,
                classes=None if classes is None else classes[i],
                strength=[float(v) for v in strength[:, i]],
            )
            for i in range(plan.k)
        ],
        png_base64=png,
    )


@router.post("/{model}/concepts", responses=_ANSWERS, response_model=None)
async def concepts(
    serving: ServingDep, images: ImagesDep, options: Annotated[ConceptOptions, Query()]
) -> Response:
    """Deep Feature Factorization: a layer's maps as K non-negative concepts with their classes."""
    model, settings = serving.model, serving.settings
    plan = plan_concepts(model, **options.plan_args())
    fmt, pixels = options.fmt.value, settings.max_image_pixels

    def work(_progress: Progress) -> Encoded:
        answer = concepts_task(
            model, images, plan, fmt=common.picture_format(fmt), max_pixels=pixels
        )
        return common.encoded(fmt, answer, partial(_body, model, plan, answer.result))

    return await common.answer_or_job(
        serving, "concepts", work, total=1, estimate_s=0.0, run_async=options.run_async
    )


DatasetPath = Annotated[
    str, PathParam(description="a dataset name from GET /v1/datasets", max_length=128)
]


class DatasetConceptOptions(Options):
    layer: str | None = Field(
        None,
        description="a layer with channel maps (conv maps, ViT tokens); default: the deepest",
        max_length=256,
    )
    k: int = Field(4, **K.limits, description="concepts (NMF components); at most the channels")
    top: int = Field(3, **TOP.limits, description="classes listed per concept")
    exemplars: int = Field(9, **EXEMPLARS.limits, description="pictures listed per concept")
    limit: int | None = Field(
        None,
        ge=2,
        le=100_000,
        description="a random sample of this many pictures (drawn with seed); default: all, "
        "within the 256 MiB cap on the layer's maps (422 naming it beyond)",
    )
    seed: int = seed_field("random state of the sample")


@router.post(
    "/{model}/datasets/{dataset}/concepts",
    status_code=202,
    response_model=None,
    responses={
        **common.JOB_ACCEPTED,
        **common.error_responses(NotFound, *common.MODEL_ERRORS, *common.JOB_ERRORS),
    },
)
async def dataset_concepts(
    serving: ServingDep,
    datasets: DatasetsDep,
    dataset: DatasetPath,
    options: Annotated[DatasetConceptOptions, Query()],
) -> Response:
    """DFF over a dataset as a job: K concepts, their classes and exemplar pictures."""
    model, settings = serving.model, serving.settings
    found = datasets.get(dataset, field="dataset")
    plan = plan_concepts(model, layer=options.layer, k=options.k, top=options.top)
    indices = tuple(int(i) for i in sample_indices(found, options.limit, options.seed))
    check_size(model, plan, len(indices))
    sharded = concepts_work(
        model,
        found,
        plan,
        indices,
        exemplars=options.exemplars,
        max_pixels=settings.max_image_pixels,
    )
    return await common.answer_dataset_job(serving, "dataset_concepts", sharded)


def concepts_work(
    model: LoadedModel,
    dataset: Dataset,
    plan: ConceptPlan,
    indices: Sequence[int],
    *,
    exemplars: int,
    max_pixels: int,
) -> ShardedWork:
    """DFF over the pictures `indices` as shards: each slice's maps, one factorization of
    them all in the merge, answered as JSON."""

    def run(part: Sequence[int], _prelude: Partial, progress: Progress) -> Partial:
        return concepts_slice_task(
            model, dataset, plan, part, max_pixels=max_pixels, progress=progress
        )

    def merge(partials: list[Partial], _prelude: Partial) -> Encoded:
        result = merge_concepts(partials, model, plan, exemplars=exemplars, total=len(indices))
        body = _dataset_body(model, dataset, plan, result)
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return ShardedWork(tuple(indices), run, merge)


def _dataset_body(
    model: LoadedModel, dataset: Dataset, plan: ConceptPlan, result: DatasetConcepts
) -> DatasetConceptResponse:
    classes = class_items(model, result, plan.top)
    concepts = []
    for i, order in enumerate(result.exemplars):
        exemplars = [
            Exemplar(
                index=int(result.indices[row]),
                label=dataset.classes[dataset.label(int(result.indices[row]))],
                strength=float(result.strength[row, i]),
            )
            for row in order
        ]
        concepts.append(
            DatasetConcept(
                concept=i, classes=None if classes is None else classes[i], exemplars=exemplars
            )
        )
    return DatasetConceptResponse(
        model=model.name,
        dataset=dataset.name,
        layer=plan.layer,
        k=plan.k,
        images=len(result.indices),
        indices=result.indices.tolist(),
        classifier=None if result.scores is None else result.scores.classifier,
        classes_note=result.why,
        concepts=concepts,
    )
