"""Channel contributions: which channels of a layer carry a target's score, per image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from api_schemas.contributions import (
    ChannelContribution,
    ClassContributions,
    ContributionItem,
    ContributionsResponse,
    DatasetContributionsResponse,
)
from model_registry.datasets import Dataset
from model_registry.errors import NotFound
from model_registry.registry import LoadedModel
from service.engine.attribution.contributions import CONDUCTANCE, Contributions, plan_contributions
from service.engine.attribution.dataset_contributions import (
    ClassChannelMatrix,
    DatasetContributionPlan,
    plan_dataset_contributions,
)
from service.engine.encode import NPY_MEDIA_TYPE
from service.engine.partials import Partial
from service.engine.progress import Progress, reporting
from service.jobs.job_store import Encoded
from service.jobs.shards import ShardedWork
from service.routes import common
from service.routes.contribution_options import ContributionOptions, DatasetContributionOptions
from service.routes.deps import DatasetsDep, ImagesDep, ServingDep
from service.routes.explained_targets import target_items
from service.workers.contribution_tasks import (
    contributions_task,
    dataset_contribution_slice_task,
    dataset_contributions_merge_task,
)

router = APIRouter(prefix="/v1/models", tags=["attributions"])

_ANSWERS = {
    **common.answers(
        "json: the top channels per image and target; npy: float32 [B, C] ([B, T, C] for "
        "several targets)",
        NPY_MEDIA_TYPE,
        body=ContributionsResponse,
        errors=(*common.MODEL_ERRORS, *common.IMAGE_ERRORS, *common.DEVICE_ERRORS),
    ),
    **common.JOB_ACCEPTED,
    **common.error_responses(*common.JOB_ERRORS),
}


def top_channels(values: np.ndarray, top: int) -> list[ChannelContribution]:
    """The `top` largest values [C], largest first (equal values: lower channel first)."""
    order = np.argsort(-values, kind="stable")[:top]
    return [ChannelContribution(channel=int(c), contribution=float(values[c])) for c in order]


def _body(options: ContributionOptions, model_name: str, items: list, result: Contributions):
    conductance = result.method == CONDUCTANCE
    batch, count, channels = result.values.shape
    shape = [batch, count, channels] if result.several_targets else [batch, channels]
    return ContributionsResponse(
        model=model_name,
        layer=result.layer,
        method=result.method,
        steps=options.steps if conductance else None,
        baseline=options.baseline.value if conductance else None,
        channel_count=channels,
        shape=shape,
        channels=items[0].channels,
        items=items,
    )


@router.post("/{model}/contributions", responses=_ANSWERS, response_model=None)
async def contributions(
    serving: ServingDep, images: ImagesDep, options: Annotated[ContributionOptions, Query()]
) -> Response:
    """Each channel's contribution to a target (class, region, box) of one or more images."""
    model = serving.model
    plan = plan_contributions(model, **options.plan_args())
    fmt, pixels = options.fmt.value, serving.settings.max_image_pixels

    def work(progress: Progress) -> Encoded:
        with reporting(progress):  # conductance reports each pass; async=true may cancel
            answer = contributions_task(model, images, plan, fmt=fmt, max_pixels=pixels)
        if fmt == "npy":
            return Encoded(answer.body, answer.media_type)
        result = answer.result
        explained = target_items(model, result)
        items = [
            ContributionItem(
                image=image,
                target=explained[image][slot],
                total=float(result.values[image, slot].sum()),
                channels=top_channels(result.values[image, slot], plan.top),
            )
            for image in range(result.values.shape[0])
            for slot in range(result.values.shape[1])
        ]
        body = _body(options, model.name, items, result)
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return await common.answer_or_job(
        serving, "contributions", work, total=1, estimate_s=0.0, run_async=options.run_async
    )


DatasetPath = Annotated[
    str, PathParam(description="a dataset name from GET /v1/datasets", max_length=128)
]


@router.post(
    "/{model}/datasets/{dataset}/contributions",
    status_code=202,
    response_model=None,
    responses={
        **common.JOB_ACCEPTED,
        **common.error_responses(NotFound, *common.MODEL_ERRORS, *common.JOB_ERRORS),
    },
)
async def dataset_contributions(
    serving: ServingDep,
    datasets: DatasetsDep,
    dataset: DatasetPath,
    options: Annotated[DatasetContributionOptions, Query()],
) -> Response:
    """A job: per class, each channel's mean contribution to that class over the pictures
    labelled with it (the class x channel matrix; result at /v1/jobs/{id}/result)."""
    model, settings = serving.model, serving.settings
    found = datasets.get(dataset, field="dataset")
    plan = plan_dataset_contributions(model, found, **options.plan_args())
    work = contributions_work(model, found, plan, max_pixels=settings.max_image_pixels)
    return await common.answer_dataset_job(serving, "dataset_contributions", work)


def contributions_work(
    model: LoadedModel, dataset: Dataset, plan: DatasetContributionPlan, *, max_pixels: int
) -> ShardedWork:
    """The job in slices of the plan's pictures: each slice's sums and counts per label,
    added into the class x channel matrix's JSON answer."""

    def run(indices: Sequence[int], _prelude: Partial, progress: Progress) -> Partial:
        return dataset_contribution_slice_task(
            model, dataset, plan, indices, max_pixels=max_pixels, progress=progress
        )

    def merge(partials: list[Partial], _prelude: Partial) -> Encoded:
        body = _dataset_body(model.name, plan, dataset_contributions_merge_task(partials))
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return ShardedWork(plan.indices, run, merge)


def _dataset_body(
    model_name: str, plan: DatasetContributionPlan, result: ClassChannelMatrix
) -> DatasetContributionsResponse:
    rows = []
    for index, name in enumerate(plan.classes):
        row = result.matrix[index]
        count = int(result.counts[index])
        channels = top_channels(row, plan.contribution.top) if count else []
        rows.append(
            ClassContributions(
                class_index=plan.class_map[index], label=name, images=count, channels=channels
            )
        )
    return DatasetContributionsResponse(
        model=model_name,
        dataset=plan.dataset,
        layer=plan.contribution.layer,
        method=plan.contribution.method,
        images=int(result.counts.sum()),
        classes=rows,
        matrix=[[float(v) if np.isfinite(v) else None for v in row] for row in result.matrix],
    )
