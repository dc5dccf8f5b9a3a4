"""Each request bound is written once, in the engine: the OpenAPI document shows the range
the engine's plan enforces, and the engine refuses a value just outside it by name."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from model_registry.errors import InvalidInput
from service.app import create_app
from service.engine.attribution.contributions import TOP
from service.engine.attribution.plan import METRIC_STEPS, NOISE, SAMPLES, STEPS
from service.engine.checks import Bound
from service.engine.insight.embedding import PERPLEXITY
from service.engine.insight.invert import ALPHA, BETA, NORM
from service.engine.insight.options import LR, TV


class Case(NamedTuple):
    path: str
    name: str
    bound: Bound
    integer: bool = False


CASES = [
    Case("/v1/models/{model}/cam", "metric_steps", METRIC_STEPS, integer=True),
    Case("/v1/models/{model}/gradients", "steps", STEPS, integer=True),
    Case("/v1/models/{model}/gradients", "samples", SAMPLES, integer=True),
    Case("/v1/models/{model}/gradients", "noise", NOISE),
    Case("/v1/models/{model}/layers/{layer}/maximize", "lr", LR),
    Case("/v1/models/{model}/layers/{layer}/maximize", "tv", TV),
    Case("/v1/models/{model}/layers/{layer}/invert", "lr", LR),
    Case("/v1/models/{model}/layers/{layer}/invert", "tv", TV),
    Case("/v1/models/{model}/layers/{layer}/invert", "beta", BETA),
    Case("/v1/models/{model}/layers/{layer}/invert", "norm", NORM),
    Case("/v1/models/{model}/layers/{layer}/invert", "alpha", ALPHA),
    Case("/v1/models/{model}/embedding", "perplexity", PERPLEXITY),
    Case("/v1/models/{model}/contributions", "steps", STEPS, integer=True),
    Case("/v1/models/{model}/contributions", "top", TOP, integer=True),
]


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return create_app().openapi()


def _schema(openapi: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    (parameter,) = [p for p in openapi["paths"][path]["post"]["parameters"] if p["name"] == name]
    schema = parameter["schema"]
    return next((s for s in schema.get("anyOf", []) if s.get("type") != "null"), schema)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.path.rsplit('/', 1)[-1]}-{c.name}")
def test_openapi_shows_the_engine_bound(openapi: dict[str, Any], case: Case) -> None:
    schema = _schema(openapi, case.path, case.name)
    low_key = "exclusiveMinimum" if case.bound.strict_low else "minimum"
    assert schema[low_key] == case.bound.low
    assert schema["maximum"] == case.bound.high


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.path.rsplit('/', 1)[-1]}-{c.name}")
def test_the_engine_refuses_values_just_outside_by_name(case: Case) -> None:
    bound = case.bound
    check = bound.check_int if case.integer else bound.check
    step = 1 if case.integer else 1e-6
    assert check(case.name, bound.high) == bound.high
    if not bound.strict_low:
        assert check(case.name, bound.low) == bound.low
    outside = [bound.high + step, bound.low if bound.strict_low else bound.low - step]
    for value in outside:
        with pytest.raises(InvalidInput) as caught:
            check(case.name, value)
        assert caught.value.field == case.name
