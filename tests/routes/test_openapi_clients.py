"""The OpenAPI document in the form client generators and fuzzers read: files as
`format: binary`, binary answers that are not parsed as JSON, enum members of their own,
the 400s and 401s, error bodies as sent, and a 405 that names every method."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.helpers import error_body, files

KEY = "spec-key"
ERROR = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture(scope="module")
def keyed(tiny_config) -> Iterator[TestClient]:
    settings = Settings(models=tiny_config, device="cpu", api_keys=f"alice:{KEY}")
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        yield client


def _operations(document: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_uploads_are_binary_files_of_picture_types(tiny_client: TestClient) -> None:
    document = tiny_client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["StoreImageUpload"]["properties"]["image"]["format"] == "binary"
    cam = schemas["CamUpload"]["properties"]["image"]
    assert cam["type"] == "array" and cam["items"] == {"type": "string", "format": "binary"}
    assert "contentMediaType" not in str(document) and "anyOf" not in str(cam)
    form = document["paths"]["/v1/models/{model}/cam"]["post"]["requestBody"]["content"]
    types = form["multipart/form-data"]["encoding"]["image"]["contentType"].split(", ")
    assert {"image/png", "image/jpeg", "image/webp"} <= set(types)


def test_binary_answers_list_octet_stream_first(tiny_client: TestClient) -> None:
    paths = tiny_client.get("/openapi.json").json()["paths"]
    for path, method in (
        ("/v1/models/{model}/cam", "post"),
        ("/v1/models/{model}/feature-maps", "post"),
        ("/v1/jobs/{job_id}/result", "get"),
        ("/v1/datasets/{dataset}/images/{index}", "get"),
    ):
        content = paths[path][method]["responses"]["200"]["content"]
        assert next(iter(content)) == "application/octet-stream", path
        assert all(
            media["schema"] == {"type": "string", "format": "binary"}
            for name, media in content.items()
            if name != "application/json"
        )
    listed = paths["/v1/models"]["get"]["responses"]["200"]["content"]
    assert list(listed) == ["application/json"]


def test_enum_members_do_not_collide(tiny_client: TestClient) -> None:
    cam = tiny_client.get("/openapi.json").json()["components"]["schemas"]["CamMethod"]
    names = dict(zip(cam["enum"], cam["x-enum-varnames"], strict=True))
    assert names["gradcam"] == "gradcam" and names["gradcam++"] == "gradcam_plus_plus"
    assert len({n.upper() for n in names.values()}) == len(names)


def test_operation_ids_are_the_function_names(tiny_client: TestClient) -> None:
    document = tiny_client.get("/openapi.json").json()
    ids = [operation["operationId"] for _p, _m, operation in _operations(document)]
    assert len(set(ids)) == len(ids)
    assert {"cam", "feature_maps", "store_image", "get_job", "delete_job"} <= set(ids)


def test_errors_are_documented_as_they_are_sent(tiny_client: TestClient) -> None:
    document = tiny_client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, _method, operation in _operations(document):
        responses = operation["responses"]
        assert list(responses["400"]["content"])[0] == "text/plain", path
        if "422" in responses:
            assert responses["422"]["content"]["application/json"]["schema"] == ERROR
        assert "security" not in operation, "no keys configured: nothing to declare"
    job = document["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["422"]
    assert job["content"]["application/json"]["schema"] == ERROR
    # and a job's 422 is such a body
    body = error_body(tiny_client.get("/v1/jobs/" + "x" * 65), 422, "job_id")
    assert set(body) <= {"detail", "field", "errors"}


def test_a_broken_multipart_body_is_a_documented_400(tiny_client: TestClient) -> None:
    answer = tiny_client.post(
        "/v1/models/tiny-resnet/predict",
        content=b"not a form",
        headers={"Content-Type": "multipart/form-data"},
    )
    error_body(answer, 400, None)
    paths = tiny_client.get("/openapi.json").json()["paths"]
    documented = paths["/v1/models/{model}/predict"]["post"]["responses"]["400"]["content"]
    assert documented["application/json"]["schema"] == ERROR


def test_a_405_allows_every_method_of_the_path(tiny_client: TestClient) -> None:
    answer = tiny_client.options("/v1/jobs/abc")
    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}
    assert answer.json()["detail"] == "Method Not Allowed"
    put = tiny_client.put("/v1/models/tiny-resnet/cam")
    assert put.status_code == 405 and put.headers["allow"] == "POST"


def test_with_keys_every_protected_operation_declares_bearer_and_401(keyed: TestClient) -> None:
    document = keyed.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        **document["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    for path, _method, operation in _operations(document):
        if path in ("/healthz", "/readyz"):
            assert "security" not in operation and "401" not in operation["responses"]
        else:
            assert operation["security"] == [{"bearerAuth": []}], path
            assert operation["responses"]["401"]["content"]["application/json"]["schema"] == ERROR
    anonymous = keyed.get("/v1/models", headers={"Authorization": ""})
    error_body(anonymous, 401, "authorization")
    assert keyed.get("/v1/models").status_code == 200
    assert keyed.post("/v1/images", files=files(b"")).status_code == 422
