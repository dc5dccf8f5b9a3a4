"""Swagger UI at /docs and ReDoc at /redoc, with every asset served by this service.

FastAPI's own pages load their scripts from a public CDN, which breaks on an offline network
and carries no integrity check. The assets here are the ones the `fastapi-offline` package
ships (Swagger UI and ReDoc bundles, unmodified), served from an allow-list by name.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

from model_registry.errors import NotFound

ASSETS_PATH = "/docs/assets"
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
_OAUTH2_REDIRECT = "/docs/oauth2-redirect"

router = APIRouter(tags=["docs"], include_in_schema=False)


@cache
def assets() -> dict[str, Path]:
    """The pages' files by name: an allow-list, so no request path reaches the file system."""
    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    return {p.name: p for p in sorted(folder.iterdir()) if p.suffix in _MEDIA_TYPES}


def _asset_url(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"


def _openapi_url(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{request.app.openapi_url}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for /openapi.json."""
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_asset_url(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset_url(request, "swagger-ui.css"),
        swagger_favicon_url=_asset_url(request, "favicon.png"),
        oauth2_redirect_url=_OAUTH2_REDIRECT,
        # No call to swagger.io's online validator: the page works with no outside network.
        swagger_ui_parameters={**(request.app.swagger_ui_parameters or {}), "validatorUrl": None},
    )


@router.get(_OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc for /openapi.json."""
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=_asset_url(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset_url(request, "favicon.png"),
        with_google_fonts=False,
    )


@router.get(ASSETS_PATH + "/{name}")
async def asset(name: str) -> FileResponse:
    """One of the pages' files; the bundles change only with the package, so a day's cache."""
    path = assets().get(name)
    if path is None:
        raise NotFound(f"no docs asset named {name!r}", field="name", choices=sorted(assets()))
    headers = {"Cache-Control": "public, max-age=86400"}
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)
