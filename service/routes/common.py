"""What the route modules share (no router here): query parameters, the OpenAPI answers
built from the errors a route can raise, and the helper that answers png, npy or json."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api_schemas.errors import ErrorBody
from api_schemas.jobs import JobBody, JobProgress, JobShards, JobStatus, ShardRun
from model_registry.errors import (
    ClientError,
    DeadlineExceeded,
    InvalidInput,
    NotFound,
    NotReady,
    OutOfDeviceMemory,
    Overloaded,
    PayloadTooLarge,
    TooManyJobs,
    TooSlow,
    UnsupportedMedia,
)
from service.engine.progress import Progress
from service.jobs.job_store import SUCCEEDED, Encoded, JobView
from service.jobs.on_device import on_device
from service.jobs.replay import EXECUTION, replay_of
from service.jobs.shards import ShardedWork
from service.routes.deps import Serving
from service.workers.answer import Answer
from service.workers.tenancy import OPEN, SCOPE_KEY

# What every route addressing a model can answer, and what uploads and device work add.
MODEL_ERRORS: tuple[type[ClientError], ...] = (NotFound, NotReady, Overloaded, InvalidInput)
IMAGE_ERRORS: tuple[type[ClientError], ...] = (InvalidInput, PayloadTooLarge, UnsupportedMedia)
DEVICE_ERRORS: tuple[type[ClientError], ...] = (DeadlineExceeded, OutOfDeviceMemory)

BINARY = {"schema": {"type": "string", "format": "binary"}}


def error_responses(*errors: type[ClientError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error types: one entry per status, their docstrings
    joined as its description, each with the error body."""
    described: dict[int, list[str]] = {}
    for error in errors:
        summary = (error.__doc__ or error.__name__).strip().splitlines()[0]
        docs = described.setdefault(error.status, [])
        if summary not in docs:
            docs.append(summary)
    return {
        status: {"model": ErrorBody, "description": " ".join(docs)}
        for status, docs in sorted(described.items())
    }


def answers(
    description: str,
    *media: str,
    body: type[BaseModel] | None = None,
    errors: tuple[type[ClientError], ...] = (),
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses`: a 200 in the given binary media types (plus `body` as JSON),
    and the errors."""
    ok: dict[str, Any] = {"description": description, "content": {m: BINARY for m in media}}
    if body is not None:
        ok["model"] = body
    return {200: ok, **error_responses(*errors)}


def split_names(value: str | None) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


LayerPath = Annotated[
    str, PathParam(description="a layer from GET /v1/models/{model}/layers", max_length=256)
]
JSON_MEDIA_TYPE = "application/json"
JOB_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobBody,
        "description": "accepted as a job; poll the Location header (GET /v1/jobs/{id})",
        "headers": {
            "Location": {"description": "/v1/jobs/{id}", "schema": {"type": "string"}},
        },
    }
}
IMAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "png: the image; npy: float32 [C, H, W] in [0, 1]; "
        "json: curve and base64 PNG",
        "content": {"image/png": {}, "application/x-npy": {}, "application/json": {}},
    }
}
JOB_ERRORS: tuple[type[ClientError], ...] = (TooSlow, TooManyJobs)
SYNTHESIS_ANSWERS: dict[int | str, dict[str, Any]] = {
    **IMAGE_ANSWERS,
    **JOB_ACCEPTED,
    **error_responses(*MODEL_ERRORS, *DEVICE_ERRORS, *JOB_ERRORS),
}


def picture_format(fmt: str) -> str:
    """What a task encodes for `fmt`: npy as asked, png for png and for json (which embeds it)."""
    return "npy" if fmt == "npy" else "png"


def encoded(fmt: str, answer: Answer | Encoded, to_json: Callable[[str], BaseModel]) -> Encoded:
    """The answer in `fmt`: png/npy/npz bytes as they are; for json the body `to_json` builds
    from the base64 of the png (which json answers embed)."""
    if fmt != "json":
        return Encoded(answer.body, answer.media_type)
    document = to_json(base64.b64encode(answer.body).decode("ascii"))
    return Encoded(document.model_dump_json().encode(), JSON_MEDIA_TYPE)


def respond(answer: Answer | Encoded) -> Response:
    return Response(answer.body, media_type=answer.media_type)


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
        replica=view.worker,
        attempts=view.attempts,
        shards=_shards(view),
    )


def _shards(view: JobView) -> JobShards | None:
    shards = view.shards
    if shards is None:
        return None
    return JobShards(
        total=shards.total,
        done=shards.done,
        running=[ShardRun(shard=i, replica=r) for i, r in shards.running],
        by_replica=shards.by_replica,
        rerun=list(shards.rerun),
        merge_s=shards.merge_s,
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
    serving: Serving,
    kind: str,
    work: Callable[[Progress], Encoded],
    *,
    total: int,
    estimate_s: float,
    run_async: bool | None,
) -> Response:
    """Run `work` now, or as a job when asked (`async=true`) or when the estimate exceeds
    the synchronous budget (`async` unset). Either way it runs on the model's device
    worker; a job answers 202 with `Location`. A request replayed to run a job shared
    through Redis carries its `Execution`, which runs the work here as that job."""
    model, pool, settings = serving.model, serving.pool, serving.settings
    scope = serving.request.scope if serving.request is not None else {}
    if EXECUTION in scope:
        return await scope[EXECUTION].run(pool, model, work, total)
    as_job = run_async if run_async is not None else estimate_s > settings.sync_budget_s
    if not as_job:
        return respond(await pool.run_on(model, work, deadline(settings.job_timeout_s)))
    job, runner = on_device(pool, model, work, timeout_s=settings.job_timeout_s)
    replay = replay_of(scope) if scope else None
    tenant = scope.get(SCOPE_KEY, OPEN)
    submit = partial(
        serving.jobs.submit, kind, job, total=total, runner=runner, replay=replay, tenant=tenant
    )
    view = await run_in_threadpool(submit)  # with Redis, network I/O
    body = job_body(view).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{view.id}"})


async def answer_dataset_job(serving: Serving, kind: str, sharded: ShardedWork) -> Response:
    """A job over a dataset's pictures: 202 with `Location`. With Redis, the replica that
    replays it splits it into shards any replica runs; otherwise it runs here, whole."""
    scope = serving.request.scope if serving.request is not None else {}
    if EXECUTION in scope:
        return await scope[EXECUTION].run_sharded(serving.pool, serving.model, sharded)
    total = len(sharded.indices)
    return await answer_or_job(
        serving, kind, sharded.whole(), total=total, estimate_s=0.0, run_async=True
    )
