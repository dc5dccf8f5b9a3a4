"""Liveness and readiness; never queued behind model work."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api_schemas.health import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(request: Request) -> JSONResponse:
    """Every model is loaded and warmed up (503 before)."""
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        body = Readiness(status="loading", models=[])
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    return JSONResponse(Readiness(status="ready", models=registry.names()).model_dump())
