"""Datasets: the list, and a model's analysis over a whole dataset as a job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from api_schemas.datasets import (
    ActivationHistogram,
    DatasetAnalysisResponse,
    DatasetEmbedding,
    DatasetInfo,
    DatasetList,
    LayerAnalysis,
    Mistake,
    SkippedPicture,
)
from api_schemas.insight import EmbeddingMethod
from model_registry.datasets import Dataset, picture_media_type
from model_registry.errors import InvalidInput, NotFound, UnsupportedMedia
from model_registry.registry import LoadedModel
from service.engine.dataset.analysis import DatasetAnalysis, analyse_slice, analysis_prelude
from service.engine.dataset.merge import merge_analysis
from service.engine.dataset.plan import AnalysisPlan, plan_analysis
from service.engine.dataset.tally import LayerSummary
from service.engine.partials import Partial
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.jobs.shards import ShardedWork
from service.routes import common
from service.routes.deps import DatasetsDep, ServingDep
from service.routes.options import DatasetAnalysisOptions

router = APIRouter(prefix="/v1", tags=["datasets"])

DatasetPath = Annotated[
    str, PathParam(description="a dataset name from GET /v1/datasets", max_length=128)
]


@router.get("/datasets", response_model=DatasetList)
async def list_datasets(datasets: DatasetsDep) -> DatasetList:
    """The datasets: the built-in digits and the folders of the models file."""
    return DatasetList(
        data=[DatasetInfo(name=d.name, size=len(d), classes=list(d.classes)) for d in datasets]
    )


@router.get(
    "/datasets/{dataset}/images/{index}",
    response_class=Response,
    responses={
        200: {
            "description": "the picture as stored (digits: a 32x32 PNG)",
            "content": {"image/*": {}},
        },
        **common.error_responses(NotFound, InvalidInput, UnsupportedMedia),
    },
)
async def dataset_image(
    datasets: DatasetsDep,
    dataset: DatasetPath,
    index: Annotated[int, PathParam(description="0 .. size - 1", ge=0, le=10**9)],
) -> Response:
    """One picture of a dataset, as `image=dataset:NAME/INDEX` names it in other endpoints."""
    found = datasets.get(dataset, field="dataset")
    if index >= len(found):  # a picture that does not exist: its URL names no resource
        raise NotFound(
            f"index: dataset '{found.name}' has {len(found)} pictures (0..{len(found) - 1})",
            field="index",
            valid_range=[0, len(found) - 1],
        )
    data = datasets.read(f"dataset:{found.name}/{index}", field="index")
    media_type = picture_media_type(data)
    if media_type is None:
        raise UnsupportedMedia(
            f"index: picture {found.describe(index)} is not in a picture format", field="index"
        )
    return Response(data, media_type=media_type)


@router.post(
    "/models/{model}/datasets/{dataset}/analysis",
    status_code=202,
    response_model=None,
    responses={
        **common.JOB_ACCEPTED,
        **common.error_responses(NotFound, *common.MODEL_ERRORS, *common.JOB_ERRORS),
    },
)
async def analyse_dataset(
    serving: ServingDep,
    datasets: DatasetsDep,
    dataset: DatasetPath,
    options: Annotated[DatasetAnalysisOptions, Query()],
) -> Response:
    """Run the model over a dataset as a job: accuracy, confusion, mistakes, per-layer
    statistics and a 2-D embedding (result at /v1/jobs/{id}/result)."""
    model = serving.model
    found = datasets.get(dataset, field="dataset")
    plan = plan_analysis(model, found, **options.plan_args())
    work = analysis_work(model, found, plan, max_pixels=serving.settings.max_image_pixels)
    return await common.answer_dataset_job(serving, "dataset_analysis", work)


def analysis_work(
    model: LoadedModel, dataset: Dataset, plan: AnalysisPlan, *, max_pixels: int
) -> ShardedWork:
    """The analysis as slices: histogram edges first, then any slice of the pictures on any
    replica, then the merge into one answer."""

    def prelude(_progress: Progress) -> Partial:
        return analysis_prelude(model, dataset, plan, max_pixels=max_pixels)

    def run(indices: Sequence[int], fixed: Partial, progress: Progress) -> Partial:
        return analyse_slice(
            model, dataset, plan, indices, fixed, max_pixels=max_pixels, progress=progress
        )

    def merge(partials: list[Partial], fixed: Partial) -> Encoded:
        result = merge_analysis(model, dataset, plan, partials, fixed)
        body = _response(model.name, dataset, plan, result)
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return ShardedWork(plan.indices, run, merge, prelude)


def _layer(summary: LayerSummary) -> LayerAnalysis:
    return LayerAnalysis(
        name=summary.name,
        type=summary.type,
        shape=list(summary.shape),
        values=summary.values,
        dead_fraction=summary.dead_fraction,
        dead_channels=list(summary.dead_channels),
        sparsity=summary.sparsity,
        mean=summary.mean,
        std=summary.std,
        min=summary.min,
        max=summary.max,
        histogram=ActivationHistogram(
            edges=summary.edges.tolist(),
            counts=summary.counts.tolist(),
            clamped=list(summary.clamped),
        ),
    )


def _response(
    model: str, dataset: Dataset, plan: AnalysisPlan, result: DatasetAnalysis
) -> DatasetAnalysisResponse:
    confusion = result.confusion()
    predicted = result.predicted.tolist() if result.predicted is not None else None
    mistakes = None
    if result.predicted is not None:
        mistakes = [
            Mistake(index=i, label=label, predicted=guess, probability=p)
            for i, label, guess, p in result.mistakes()
        ]
    labels = result.labels.tolist()
    return DatasetAnalysisResponse(
        model=model,
        dataset=dataset.name,
        classes=list(result.classes),
        images=len(labels),
        indices=result.indices.tolist(),
        labels=labels,
        predicted=predicted,
        skipped=[SkippedPicture(index=s.index, reason=s.reason) for s in result.skipped],
        accuracy=result.accuracy(),
        confusion=confusion.tolist() if confusion is not None else None,
        misclassified=mistakes,
        layers=[_layer(s) for s in result.layers],
        embedding=DatasetEmbedding(
            layer=plan.embedding_layer,
            method=EmbeddingMethod(plan.method),
            feature_dim=result.feature_dim,
            seed=plan.seed,
            points=result.points.tolist(),
            labels=labels,
            predicted=predicted,
        ),
    )
