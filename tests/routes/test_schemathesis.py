"""Property-based calls generated from the OpenAPI schema (schemathesis): no answer is a 5xx.

Schemathesis' pytest plugin does not load under this pytest, so its schema and Hypothesis
strategies are driven directly, one bounded run per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def app(tiny_config):
    application = create_app(Settings(models=tiny_config, device="cpu", max_images=4))
    with TestClient(application):  # lifespan: models loaded
        yield application


def test_no_operation_answers_with_a_server_error(app) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    failures: list[str] = []
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case) -> None:
            model = (case.path_parameters or {}).get("model")
            # half the examples address the real model, so options reach the engine
            if model is not None and model.isascii() and len(model) % 2 == 0:
                case.path_parameters["model"] = "tiny-resnet"
            response = case.call()
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}: "
                    f"{response.text[:200]}"
                )

        check()
    assert not failures, "\n".join(failures[:10])
    assert len(statuses) >= 10 * len(operations)
    assert {200, 404, 422} <= set(statuses)
