"""The OpenAPI document as client generators and fuzzers read it.

FastAPI's document is true of the routes, but tools read it literally: openapi-python-client
turns a file declared as `contentMediaType` into a `str` sent without a filename, parses a
response by its *first* media type only (so PNG answers would go through `json()`), and
names enum members after their upper-cased values (`gradcam` and `gradcam++` collide).
`install_openapi` post-processes the document once, so every route keeps its plain
declarations and the document says the same thing in the form those tools understand.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI

from api_schemas.attributions import member_name
from model_registry.errors import BadRequest
from service.engine.images import ALLOWED_FORMATS

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
BINARY = {"type": "string", "format": "binary"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
VALIDATION_REF = "#/components/schemas/HTTPValidationError"
BEARER = "bearerAuth"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

Document = dict[str, Any]


def install_openapi(
    app: FastAPI, *, protected: Callable[[str], bool] | None = None, max_images: int | None = None
) -> None:
    """Serve the refined document at /openapi.json. `protected(path)` says which paths need
    an API key (None: the service runs without keys, so no operation declares security);
    `max_images` bounds a request's uploads."""
    build = app.openapi  # FastAPI's own; it rebuilds when the routes change
    cache: dict[str, Document] = {}

    def openapi() -> Document:
        raw = build()
        if cache.get("raw") is not raw:
            cache["raw"] = raw
            cache["refined"] = refine(
                copy.deepcopy(raw), protected=protected, max_images=max_images
            )
        return cache["refined"]

    app.openapi = openapi  # type: ignore[method-assign]


def refine(
    document: Document,
    *,
    protected: Callable[[str], bool] | None = None,
    max_images: int | None = None,
) -> Document:
    """Every refinement, in order; `document` is changed in place and returned."""
    _operation_ids(document)
    _binary_files(document)
    _upload_types(document, max_images)
    _enum_names(document)
    _binary_answers_first(document)
    _error_bodies(document)
    if protected is not None:
        _security(document, protected)
    return document


def _operations(document: Document) -> Iterator[tuple[str, str, Document]]:
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _walk(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _operation_ids(document: Document) -> None:
    """`cam` rather than `cam_v1_models__model__cam_post`: FastAPI's default id is the
    function's name followed by the path and the method; generated clients name their
    functions and modules after it. Kept as they are if the short names would collide."""
    short: dict[tuple[str, str], str] = {}
    for path, method, operation in _operations(document):
        suffix = re.sub(r"\W", "_", path) + "_" + method
        op_id = operation.get("operationId", "")
        if op_id.endswith(suffix) and len(op_id) > len(suffix):
            short[(path, method)] = op_id.removesuffix(suffix)
    if len(set(short.values())) != len(short):
        return
    renamed: dict[str, str] = {}
    for path, method, operation in _operations(document):
        if (path, method) in short:
            name = short[(path, method)]
            pascal = "".join(part.capitalize() for part in name.split("_"))
            renamed[f"Body_{operation['operationId']}"] = f"{pascal}Upload"
            operation["operationId"] = name
    _rename_schemas(document, renamed)


def _rename_schemas(document: Document, renamed: dict[str, str]) -> None:
    """FastAPI's form bodies are `Body_<operation id>`; `CamUpload` reads better as a class."""
    schemas = document.get("components", {}).get("schemas", {})
    renamed = {old: new for old, new in renamed.items() if old in schemas and new not in schemas}
    prefix = "#/components/schemas/"
    for node in _walk(document):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.removeprefix(prefix) in renamed:
            node["$ref"] = prefix + renamed[ref.removeprefix(prefix)]
    for old, new in renamed.items():
        schemas[new] = schemas.pop(old)
        schemas[new]["title"] = new
    document["components"]["schemas"] = dict(sorted(schemas.items()))


def _is_file(schema: object) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("type") == "array":
        return _is_file(schema.get("items"))
    return schema.get("type") == "string" and schema.get("format") == "binary"


def _binary_files(document: Document) -> None:
    """Uploads as `format: binary` (OpenAPI 3.0's file), not JSON Schema's
    `contentMediaType`, and an optional file as the file itself rather than `anyOf` with
    null: a multipart field is sent or left out, never sent as null."""
    nodes = list(_walk(document))
    for node in nodes:
        if node.get("type") == "string" and node.pop("contentMediaType", None) is not None:
            node["format"] = "binary"
    for node in nodes:
        branches = node.get("anyOf")
        if not isinstance(branches, list) or len(branches) != 2:
            continue
        files = [b for b in branches if _is_file(b)]
        if len(files) == 1 and {"type": "null"} in branches:
            del node["anyOf"]
            node.update(files[0])


def _upload_types(document: Document, max_images: int | None) -> None:
    """The media types an upload may have (`encoding.contentType`): the picture formats
    the decoder accepts; anything else is answered 415. A batch holds up to `max_images`
    (uploads, `image` and `image_id` together: 413 above)."""
    types = ", ".join(f"image/{fmt.lower()}" for fmt in ALLOWED_FORMATS if fmt != "MPO")
    for _path, _method, operation in _operations(document):
        form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
        if form is None:
            continue
        schema = form.get("schema", {})
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            schema = document["components"]["schemas"][ref.rpartition("/")[2]]
        for name, prop in schema.get("properties", {}).items():
            if _is_file(prop):
                form.setdefault("encoding", {})[name] = {"contentType": types}
            if ref and _is_file(prop) and prop.get("type") == "array" and max_images:
                # not maxItems: the limit counts `image` and `image_id` names as well
                prop["description"] = (
                    f"{prop.get('description', '')} (at most {max_images} pictures a request, "
                    "uploads and names together: 413 above)"
                ).strip()


def _enum_names(document: Document) -> None:
    """`x-enum-varnames` for string enums whose values are not identifiers, so generators
    give `gradcam++` a member of its own (GRADCAM_PLUS_PLUS) instead of GRADCAM's."""
    for node in _walk(document):
        values = node.get("enum")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            continue
        if all(v.isidentifier() for v in values):
            continue
        names = [member_name(v) for v in values]
        if len({n.upper() for n in names}) == len(names):
            node["x-enum-varnames"] = names


def _binary_answers_first(document: Document) -> None:
    """An answer that may be a picture or an array lists `application/octet-stream` first
    (each binary type it names stays listed after it, then JSON). openapi-python-client
    reads only the first media type: octet-stream makes it return the bytes untouched,
    whatever the `Content-Type` says; with JSON first it would parse a PNG as JSON."""
    for _path, _method, operation in _operations(document):
        for answer in operation.get("responses", {}).values():
            content = answer.get("content")
            if not content or set(content) <= {JSON} or OCTET_STREAM in content:
                continue
            if all(m.startswith("text/") for m in content):
                continue
            binary = {m: {"schema": dict(BINARY)} for m in content if m != JSON}
            answer["content"] = {OCTET_STREAM: {"schema": dict(BINARY)}, **binary}
            if JSON in content:
                answer["content"][JSON] = content[JSON]
            answer["description"] = (
                answer.get("description", "")
                + " (application/octet-stream stands for any of the binary types listed; "
                "the Content-Type header names which one it is)"
            ).strip()


def _error_bodies(document: Document) -> None:
    """Every error as `ErrorBody`, which is what the handlers send (a validation error
    included: FastAPI would declare its own list-shaped `HTTPValidationError`), and the
    400 of an unreadable multipart body on every operation that takes one."""
    for _path, _method, operation in _operations(document):
        responses = operation.setdefault("responses", {})
        for answer in responses.values():
            for media in answer.get("content", {}).values():
                if media.get("schema") == {"$ref": VALIDATION_REF}:
                    media["schema"] = dict(ERROR_REF)
        if "422" in responses and "Validation Error" in responses["422"].get("description", ""):
            responses["422"]["description"] = (
                "A parameter out of range or not among the choices; `field` names it."
            )
        responses["400"] = _bad_request(operation, responses.get("400"))
        operation["responses"] = dict(sorted(responses.items()))
    schemas = document.get("components", {}).get("schemas", {})
    unused = [n for n in ("HTTPValidationError", "ValidationError") if n in schemas]
    while unused:  # ValidationError is only referenced by HTTPValidationError
        name = unused.pop(0)
        if any(node.get("$ref") == f"#/components/schemas/{name}" for node in _walk(document)):
            continue
        schemas.pop(name)
        unused.extend(n for n in schemas if n.startswith("ValidationError") and n not in unused)


def _bad_request(operation: Document, declared: Document | None) -> Document:
    """The 400s: an unreadable multipart body (the error body), and a request the HTTP
    server refuses before the application sees it, such as a request line or headers over
    its size limit (uvicorn answers those in plain text). Plain text comes first, so a
    generated client reads either answer as text instead of failing to parse JSON."""
    answer = _error_answer(
        "A request the HTTP server could not parse (e.g. a query over its size limit), in "
        "plain text."
    )
    answer["content"] = {"text/plain": {"schema": {"type": "string"}}, **answer["content"]}
    body = operation.get("requestBody", {}).get("content", {})
    if declared is not None or "multipart/form-data" in body:
        answer["description"] += " " + (BadRequest.__doc__ or "").strip()
    return answer


def _error_answer(description: str) -> Document:
    return {"description": description, "content": {JSON: {"schema": dict(ERROR_REF)}}}


def _security(document: Document, protected: Callable[[str], bool]) -> None:
    """HTTP bearer (`Authorization: Bearer <key>`, as the API-key middleware reads it) on
    every protected operation, with its 401."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key (LAYERSCOPE_API_KEY, LAYERSCOPE_API_KEYS or _FILE); "
        "/metrics also takes LAYERSCOPE_METRICS_TOKEN",
    }
    for path, _method, operation in _operations(document):
        if not protected(path):
            continue
        operation["security"] = [{BEARER: []}]
        responses = operation["responses"]
        responses["401"] = _error_answer("A missing or wrong API key.")
        operation["responses"] = dict(sorted(responses.items()))
