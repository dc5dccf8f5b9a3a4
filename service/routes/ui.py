"""The model-debugging portal: one page and its assets served from the package, and sample pictures.

Kept out of the OpenAPI schema: these are the page's files, not part of the v1 API. The page
itself only talks to the public v1 endpoints, discovered from `/openapi.json`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from model_registry.errors import NotFound, closest
from service.engine.render import check_colormap, colormap_lut
from service.samples import EncodedSample, encoded_references, encoded_samples

STATIC = Path(__file__).resolve().parents[1] / "static" / "ui"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Everything the page needs comes from this server; `data:`/`blob:` carry the rendered PNGs.
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Assets are revalidated (ETag) on every load so a new release never runs stale JS.
_REVALIDATE = {"Cache-Control": "no-cache"}

router = APIRouter(prefix="/ui", tags=["portal"], include_in_schema=False)


@cache
def assets() -> dict[str, Path]:
    """The page's files by name: an allow-list, so no request path ever reaches the file system."""
    return {path.name: path for path in sorted(STATIC.iterdir()) if path.suffix in _MEDIA_TYPES}


def _asset(name: str) -> FileResponse:
    path = assets()[name]
    headers = (
        {**_REVALIDATE, "Content-Security-Policy": _CSP} if path.suffix == ".html" else _REVALIDATE
    )
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)


@router.get("")
@router.get("/")
async def page() -> FileResponse:
    """The portal page."""
    return _asset("index.html")


async def _samples() -> dict[str, EncodedSample]:
    # Encoding the photos takes a moment the first time; keep it off the event loop.
    return await run_in_threadpool(encoded_samples)


async def _all_pictures() -> dict[str, EncodedSample]:
    samples = await _samples()
    return {**samples, **await run_in_threadpool(encoded_references)}


@router.get("/references")
async def list_references() -> dict[str, list[dict[str, object]]]:
    """More digits, with their labels, for the embedding's reference points."""
    references = await run_in_threadpool(encoded_references)
    data: list[dict[str, object]] = [
        {
            "name": r.name,
            "label": r.name.rsplit("label", 1)[1].removesuffix(".png"),
            "url": f"/ui/samples/{r.name}",
        }
        for r in references.values()
    ]
    return {"data": data}


@router.get("/samples")
async def list_samples() -> dict[str, list[dict[str, object]]]:
    """The built-in sample pictures: name, media type, 1 (digit) or 3 (photo) channels, URL."""
    samples = await _samples()
    data = [
        {
            "name": s.name,
            "media_type": s.media_type,
            "channels": s.channels,
            "url": f"/ui/samples/{s.name}",
        }
        for s in samples.values()
    ]
    return {"data": data}


@router.get("/samples/{name}")
async def sample(name: Annotated[str, PathParam(max_length=128)]) -> Response:
    """One sample (or reference) picture, as a file."""
    samples = await _all_pictures()
    if name not in samples:
        raise NotFound(
            f"sample '{name[:80]}' does not exist; GET /ui/samples lists them",
            field="name",
            closest=closest(name, samples),
        )
    found = samples[name]
    return Response(
        found.data, media_type=found.media_type, headers={"Cache-Control": "max-age=86400"}
    )


@router.get("/colormaps/{name}")
async def colormap(name: Annotated[str, PathParam(max_length=64)]) -> Response:
    """A matplotlib colormap as 256 RGB rows: the page colours maps it draws from npy values
    exactly as the server colours its PNGs."""
    check_colormap(name, field="name")
    body = {"name": name, "lut": colormap_lut(name).tolist()}
    return Response(
        json.dumps(body, separators=(",", ":")),
        media_type="application/json",
        headers={"Cache-Control": "max-age=86400"},
    )


@router.get("/{name}")
async def asset(name: Annotated[str, PathParam(max_length=128)]) -> FileResponse:
    """One of the page's files (HTML, JavaScript modules, CSS, icon)."""
    if name not in assets():
        raise NotFound(f"the portal has no file '{name[:80]}'", field="name")
    return _asset(name)
