"""What the route modules share (no router here): query parameters, the OpenAPI answers
built from the errors a route can raise, and the helper that answers png, npy or json."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api_schemas.errors import ErrorBody
from model_registry.errors import (
    ClientError,
    DeadlineExceeded,
    InvalidInput,
    NotFound,
    NotReady,
    OutOfDeviceMemory,
    Overloaded,
    PayloadTooLarge,
    UnsupportedMedia,
)

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
