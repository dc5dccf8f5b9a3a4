"""Jobs: status with progress and ETA, the result, cancellation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import Response

from api_schemas.jobs import JobBody
from model_registry.errors import NotFinished, NotFound
from service.jobs.job_store import SUCCEEDED
from service.routes.common import error_responses, job_body
from service.routes.deps import JobsDep, TenantDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
# Plain `def` handlers run in the thread pool: with Redis the job store does network I/O.

JobId = Annotated[str, PathParam(description="the id from a 202 answer's Location", max_length=64)]


@router.get("/{job_id}", response_model=JobBody, responses=error_responses(NotFound))
def get_job(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> JobBody:
    """A job's status, progress (step/total), ETA and, once it succeeded, its result."""
    view = jobs.get(job_id, tenant)
    if view.status == SUCCEEDED:
        view, result = jobs.result(job_id, tenant)
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
def get_job_result(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> Response:
    """The result of a succeeded job, with its own media type."""
    _, result = jobs.result(job_id, tenant)
    return Response(result.body, media_type=result.media_type)


@router.delete("/{job_id}", response_model=JobBody, responses=error_responses(NotFound))
def delete_job(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> JobBody:
    """Cancel a queued or running job (it stops before its next step), or forget a finished one."""
    return job_body(jobs.delete(job_id, tenant))
