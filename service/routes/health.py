"""Liveness and readiness; never queued behind model work."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api_schemas.health import Health, Readiness
from service.jobs.stores import redis_state

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(request: Request) -> JSONResponse:
    """Every model is loaded and warmed up (503 before); with Redis, whether it is reachable."""
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        body = Readiness(status="loading", models=[])
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    jobs = getattr(request.app.state, "jobs", None)
    redis = await run_in_threadpool(redis_state, jobs) if jobs is not None else None
    # Still 200 while Redis is down: this replica keeps serving requests that carry their
    # image, and taking every replica out of rotation at once would stop those too.
    status = "ready" if redis in (None, "ok") else "degraded"
    body = Readiness(status=status, models=registry.names(), redis=redis)
    return JSONResponse(body.model_dump(exclude_none=True))
