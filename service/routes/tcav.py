"""TCAV as a job: whether concepts (folder datasets) matter to a class at chosen layers."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import Field

from api_schemas.concepts import TcavResponse, TcavScore
from model_registry.errors import InvalidInput, NotFound
from model_registry.registry import LoadedModel
from service.engine.attribution.targets import parse_targets
from service.engine.concepts.tcav import RUNS, SAMPLES, TcavPlan, TcavResult, plan_tcav
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.routes import common
from service.routes.deps import DatasetsDep, ImagesDep, ServingDep
from service.routes.options import Options, seed_field
from service.workers.concept_tasks import tcav_task

router = APIRouter(prefix="/v1/models", tags=["concepts"])

_CONCEPT = "DATASET or DATASET/CLASS (GET /v1/datasets)"


class TcavOptions(Options):
    layers: str | None = Field(
        None,
        description="comma-separated layers (at most 8); default: the deepest map",
        max_length=2048,
    )
    concepts: str = Field(description=f"comma-separated concepts, each {_CONCEPT}", max_length=2048)
    random: str = Field(description=f"the random pictures: {_CONCEPT}", max_length=256)
    target: str = Field(description="the class explained: an index or a label", max_length=256)
    runs: int = Field(10, **RUNS.limits, description="CAVs per concept and random CAVs")
    samples: int = Field(
        20, **SAMPLES.limits, description="pictures per CAV side (fewer when a set is smaller)"
    )
    seed: int = seed_field("random state of the samples and of the CAV classifiers")


@router.post(
    "/{model}/tcav",
    status_code=202,
    response_model=None,
    responses={
        **common.JOB_ACCEPTED,
        **common.error_responses(
            NotFound, *common.MODEL_ERRORS, *common.IMAGE_ERRORS, *common.JOB_ERRORS
        ),
    },
)
async def tcav(
    serving: ServingDep,
    images: ImagesDep,
    datasets: DatasetsDep,
    options: Annotated[TcavOptions, Query()],
) -> Response:
    """TCAV (Kim et al. 2018) as a job: per layer and concept, the score and its t-test."""
    model, settings = serving.model, serving.settings
    targets = parse_targets(options.target, model)
    if len(targets) != 1:
        raise InvalidInput("target: name exactly one class", field="target")
    plan = plan_tcav(
        model,
        datasets,
        layers=common.split_names(options.layers),
        concepts=common.split_names(options.concepts),
        random=options.random.strip(),
        target=targets[0],
        runs=options.runs,
        samples=options.samples,
        seed=options.seed,
    )
    pixels = settings.max_image_pixels

    def work(progress: Progress) -> Encoded:
        result = tcav_task(model, images, plan, max_pixels=pixels, progress=progress)
        body = _response(model, plan, result)
        return Encoded(body.model_dump_json().encode(), common.JSON_MEDIA_TYPE)

    return await common.answer_or_job(
        serving, "tcav", work, total=len(plan.concepts) + 1, estimate_s=0.0, run_async=True
    )


def _response(model: LoadedModel, plan: TcavPlan, result: TcavResult) -> TcavResponse:
    return TcavResponse(
        model=model.name,
        target=plan.target,
        label=model.label(plan.target),
        random=plan.random.name,
        runs=plan.runs,
        samples=plan.samples,
        seed=plan.seed,
        alpha=plan.alpha,
        inputs=result.inputs,
        scores=[
            TcavScore(
                layer=s.layer,
                concept=s.concept,
                score_mean=float(np.mean(s.scores)),
                score_std=float(np.std(s.scores)),
                random_mean=float(np.mean(s.random_scores)),
                random_std=float(np.std(s.random_scores)),
                p_value=s.p_value,
                significant=s.significant(plan.alpha),
                accuracy=s.accuracy,
            )
            for s in result.scores
        ],
    )
