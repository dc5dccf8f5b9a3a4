"""Liveness and readiness bodies."""

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    models: list[str]
    redis: str | None = Field(
        default=None,
        description="with LAYERSCOPE_REDIS_URL: 'ok' or why it is unreachable (status is then "
        "'degraded': requests that carry their image still work)",
    )
