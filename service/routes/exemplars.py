"""A layer's units over a dataset as a job: the pictures that excite each channel most,
with the receptive field of the strongest position (docs/units.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import Field

from api_schemas.exemplars import (
    Exemplar,
    ExemplarFormat,
    ExemplarsResponse,
    UnitExemplars,
    UnitScore,
)
from model_registry.datasets import Dataset
from model_registry.errors import InvalidInput, NotFound
from model_registry.registry import LoadedModel
from service.engine.channels import GRAMMAR
from service.engine.exemplars.plan import MAX_K, ExemplarPlan, plan_exemplars
from service.engine.exemplars.run import Exemplars
from service.engine.partials import Partial
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.jobs.shards import ShardedWork
from service.routes import common
from service.routes.deps import DatasetsDep, ServingDep
from service.routes.options import Channels, Options, seed_field
from service.workers.exemplar_tasks import exemplar_slice_task, exemplars_merge_task

router = APIRouter(prefix="/v1", tags=["units"])

DatasetPath = Annotated[
    str, PathParam(description="a dataset name from GET /v1/datasets", max_length=128)
]


class ExemplarOptions(Options):
    answer_fields = frozenset({"fmt"})
    layer: str = Field(
        description="a layer with channels: [C, H, W], ViT tokens read as maps, or a vector",
        max_length=256,
    )
    channels: Channels = Field(
        "all", description=f"{GRAMMAR} (top:N is refused: it is per picture)"
    )
    k: int = Field(9, ge=1, le=MAX_K, description="exemplar pictures per channel")
    score: UnitScore = Field(
        UnitScore.max, description="rank pictures by the channel's spatial max or mean"
    )
    limit: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="a random sample of this many pictures (drawn with seed); default: all",
    )
    seed: int = seed_field("random state of the sample")
    fmt: ExemplarFormat = Field(
        ExemplarFormat.json,
        alias="format",
        description="json: every selected channel; png: the montage of one channel (channels "
        "must select exactly one): its k pictures with the box drawn, and the boxes' crops",
    )


@router.post(
    "/models/{model}/datasets/{dataset}/units",
    status_code=202,
    response_model=None,
    responses={
        **common.JOB_ACCEPTED,
        **common.error_responses(NotFound, *common.MODEL_ERRORS, *common.JOB_ERRORS),
    },
)
async def dataset_exemplars(
    serving: ServingDep,
    datasets: DatasetsDep,
    dataset: DatasetPath,
    options: Annotated[ExemplarOptions, Query()],
) -> Response:
    """Rank a dataset's pictures for each channel of a layer as a job: the top k per channel,
    where in the map and the receptive field there (result at /v1/jobs/{id}/result)."""
    model, settings = serving.model, serving.settings
    found = datasets.get(dataset, field="dataset")
    plan = plan_exemplars(model, found, **options.plan_args())
    fmt = options.fmt.value
    if fmt == "png" and len(plan.channels) != 1:
        raise InvalidInput(
            f"channels: format=png draws one unit; '{options.channels}' selects "
            f"{len(plan.channels)} channels (send one index, e.g. channels=3)",
            field="channels",
        )
    work = units_work(model, found, plan, fmt=fmt, max_pixels=settings.max_image_pixels)
    return await common.answer_dataset_job(serving, "dataset_units", work)


def units_work(
    model: LoadedModel, dataset: Dataset, plan: ExemplarPlan, *, fmt: str, max_pixels: int
) -> ShardedWork:
    """The job in slices of the plan's pictures: each slice's top-k per channel, merged into
    the JSON answer or, for png, the one unit's montage."""

    def run(indices: Sequence[int], _prelude: Partial, progress: Progress) -> Partial:
        return exemplar_slice_task(
            model, dataset, plan, indices, max_pixels=max_pixels, progress=progress
        )

    def merge(partials: list[Partial], _prelude: Partial) -> Encoded:
        answer = exemplars_merge_task(
            model, dataset, plan, partials, fmt=fmt, max_pixels=max_pixels
        )
        if fmt == "png":
            return Encoded(answer.body, answer.media_type)
        body = _response(answer.result)
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return ShardedWork(plan.indices, run, merge)


def _response(result: Exemplars) -> ExemplarsResponse:
    units = []
    for row, channel in enumerate(result.channels.tolist()):
        top = [
            Exemplar(
                index=int(result.indices[row, i]),
                label=result.classes[int(result.labels[row, i])],
                value=float(result.values[row, i]),
                position=result.positions[row, i].tolist(),
                box=result.boxes[row, i].tolist(),
            )
            for i in range(result.indices.shape[1])
        ]
        units.append(UnitExemplars(channel=channel, top=top))
    return ExemplarsResponse(
        layer=result.layer, score=UnitScore(result.score), images=result.images, units=units
    )
