"""The OpenAPI document validates, every `$ref` resolves, and error answers come from the
error types each route can raise."""

from __future__ import annotations

from collections.abc import Iterator

from openapi_spec_validator import validate

from model_registry.errors import ClientError


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_document_validates_without_dangling_refs(default_client) -> None:
    schema = default_client.get("/openapi.json").json()
    validate(schema)
    components = schema["components"]["schemas"]
    refs = set(_refs(schema))
    assert refs, "the document uses references"
    dangling = sorted(
        ref for ref in refs if ref.removeprefix("#/components/schemas/") not in components
    )
    assert dangling == []
    for name in ("CamResponse", "GradientResponse", "FeatureMapResponse", "ErrorBody"):
        assert name in components


def test_json_answers_reference_their_body(default_client) -> None:
    paths = default_client.get("/openapi.json").json()["paths"]
    for path, body in (
        ("/v1/models/{model}/cam", "CamResponse"),
        ("/v1/models/{model}/gradients", "GradientResponse"),
        ("/v1/models/{model}/feature-maps", "FeatureMapResponse"),
    ):
        content = paths[path]["post"]["responses"]["200"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{body}"}
        assert {"image/png", "application/x-npy", "application/zip"} <= set(content)


def _statuses() -> set[int]:
    found, todo = set(), [ClientError]
    while todo:
        cls = todo.pop()
        found.add(cls.status)
        todo.extend(cls.__subclasses__())
    return found


def test_error_answers_follow_the_errors_a_route_raises(default_client) -> None:
    paths = default_client.get("/openapi.json").json()["paths"]
    cam = paths["/v1/models/{model}/cam"]["post"]["responses"]
    assert {"404", "413", "415", "422", "503", "504", "507"} <= set(cam)
    assert cam["507"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    jobs = paths["/v1/jobs/{job_id}/result"]["get"]["responses"]
    assert {"404", "409"} <= set(jobs) and "413" not in jobs
    documented = {
        int(code)
        for operations in paths.values()
        for operation in operations.values()
        for code in operation["responses"]
        if code.isdigit() and int(code) >= 400
    }
    assert _statuses() <= documented
