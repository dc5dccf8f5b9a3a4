"""Jobs: status with progress and ETA, the result, cancellation; and the helper that decides
whether a request answers directly or becomes a job."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response

from api_schemas.jobs import JobBody, JobProgress, JobStatus
from model_registry.errors import NotFinished, NotFound, TooSlow
from model_registry.registry import LoadedModel
from service.engine.insight.progress import Progress
from service.routes.common import error_responses
from service.settings import Settings
from service.workers.job_store import SUCCEEDED, Encoded, JobStore, JobView
from service.workers.pool import InferencePool

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JSON_MEDIA_TYPE = "application/json"


def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


JobsDep = Annotated[JobStore, Depends(get_jobs)]
JobId = Annotated[str, PathParam(description="the id from a 202 answer's Location", max_length=64)]


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def job_body(view: JobView, result: Encoded | None = None) -> JobBody:
    """The JSON description of a job; JSON results are inlined, others linked."""
    inline = None
    if result is not None and result.media_type == JSON_MEDIA_TYPE:
        inline = json.loads(result.body)
    fraction = min(view.step / view.total, 1.0) if view.total else 0.0
    return JobBody(
        id=view.id,
        kind=view.kind,
        status=JobStatus(view.status),
        progress=JobProgress(step=view.step, total=view.total, fraction=fraction),
        eta_s=view.eta_s,
        elapsed_s=view.elapsed_s,
        created_at=datetime.fromtimestamp(view.created, tz=UTC),
        started_at=_time(view.started),
        finished_at=_time(view.finished),
        cancel_requested=view.cancel_requested,
        result_url=f"/v1/jobs/{view.id}/result" if view.status == SUCCEEDED else None,
        result=inline,
        error=view.error,
        error_status=view.error_status,
    )


def deadline(limit_s: float) -> Progress:
    """A progress callback that ends a synchronous computation after `limit_s` seconds,
    the same limit a job gets, so `async=false` cannot hold a worker forever."""
    end = time.monotonic() + limit_s

    def progress(_step: int, _total: int) -> None:
        if time.monotonic() > end:
            raise TooSlow(
                f"the computation ran past the limit of {limit_s:g} s; "
                "send async=true to run it as a job",
                field="async",
                limit_s=limit_s,
            )

    return progress


async def answer_or_job(
    *,
    model: LoadedModel,
    kind: str,
    work: Callable[[Progress], Encoded],
    total: int,
    estimate_s: float,
    run_async: bool | None,
    pool: InferencePool,
    jobs: JobStore,
    settings: Settings,
) -> Response:
    """Run `work` now, or as a job when asked (`async=true`) or when the estimate exceeds
    the synchronous budget (`async` unset). A job answers 202 with `Location`."""
    as_job = run_async if run_async is not None else estimate_s > settings.sync_budget_s
    if not as_job:
        encoded = await pool.run_on(model, work, deadline(settings.job_timeout_s))
        return Response(encoded.body, media_type=encoded.media_type)
    view = jobs.submit(kind, work, total=total)
    location = f"/v1/jobs/{view.id}"
    body = job_body(view).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": location})


@router.get("/{job_id}", response_model=JobBody, responses=error_responses(NotFound))
async def get_job(job_id: JobId, jobs: JobsDep) -> JobBody:
    """A job's status, progress (step/total), ETA and, once it succeeded, its result."""
    view = jobs.get(job_id)
    if view.status == SUCCEEDED:
        view, result = jobs.result(job_id)
        return job_body(view, result)
    return job_body(view)


@router.get(
    "/{job_id}/result",
    response_model=None,
    responses={
        200: {
            "description": "the answer the synchronous call would have given (png, npy or json)",
            "content": {"image/png": {}, "application/x-npy": {}, "application/json": {}},
        },
        **error_responses(NotFound, NotFinished),
    },
)
async def get_job_result(job_id: JobId, jobs: JobsDep) -> Response:
    """The result of a succeeded job, with its own media type."""
    _, result = jobs.result(job_id)
    return Response(result.body, media_type=result.media_type)


@router.delete("/{job_id}", response_model=JobBody, responses=error_responses(NotFound))
async def delete_job(job_id: JobId, jobs: JobsDep) -> JobBody:
    """Cancel a queued or running job (it stops before its next step), or forget a finished one."""
    return job_body(jobs.delete(job_id))
