"""Liveness and readiness bodies."""

from pydantic import BaseModel


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    models: list[str]
