"""Map every failure onto a JSON body: client errors keep their status, the rest is a bare 500."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from model_registry.errors import ClientError

log = logging.getLogger("layerscope")

_QUOTED = re.compile(r"'([^']*)'")


def _client_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClientError)
    headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _describe(error: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """One pydantic error -> (field, sentence, extra members)."""
    loc = [
        str(part)
        for part in error.get("loc", ())
        if part not in ("query", "body", "path", "header")
    ]
    field = loc[0] if loc else "request"
    kind = error.get("type", "")
    extra: dict[str, Any] = {}
    if field == "image" and kind == "missing":
        return (
            field,
            "image: no image uploaded; send it as multipart form field 'image' (repeat it for a "
            "batch)",
            extra,
        )
    if kind == "enum":
        choices = _QUOTED.findall(str(error.get("ctx", {}).get("expected", "")))
        extra["choices"] = choices
        return field, f"{field}: {error.get('input')!r} is not one of {', '.join(choices)}", extra
    return field, f"{field}: {error.get('msg', 'invalid value')}", extra


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    field, detail, extra = _describe(errors[0]) if errors else ("request", "invalid request", {})
    summary = [{"field": f, "detail": d} for f, d, _ in (_describe(e) for e in errors)]
    return JSONResponse(
        {"detail": detail, "field": field, **extra, "errors": summary}, status_code=422
    )


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (404 for no route, 405, 400 for an unreadable body) as an
    error body. A 405's `Allow` names every method of the path: the router fills it from
    the first route whose path matched, which knows only its own method (GET, not DELETE)."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        methods = _methods_of(request)
        if methods:
            headers["Allow"] = ", ".join(methods)
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)


def _methods_of(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path (HEAD with GET)."""
    found: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            found.update(method.upper() for method in item if method != "parameters")
    if "GET" in found:
        found.add("HEAD")
    return sorted(found)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    log.exception(
        "unhandled error (request %s) on %s %s",
        request_id,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    return JSONResponse(
        {"detail": "Internal server error", "request_id": request_id},
        status_code=500,
        headers={"X-Request-ID": request_id},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClientError, _client_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
