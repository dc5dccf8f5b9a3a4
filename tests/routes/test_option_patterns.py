"""The patterns the OpenAPI document gives grammar-bound options are the server's own rules:
whatever a pattern admits is read (unless a rule no regex states refuses it, with its
own 422), and whatever it does not admit is refused with a 422 naming the field."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from model_registry.datasets import DatasetCatalog
from model_registry.errors import InvalidInput, NotFound
from service.routes.deps import REFERENCES_PATTERN
from service.routes.options import CHANNELS_PATTERN, FeatureMapOptions, FilterOptions
from tests.helpers import error_body

FM = "/v1/models/tiny-resnet/feature-maps"
ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def _ranges(value: str) -> list[tuple[int, int]]:
    """The (start, stop) pairs of a list selection, read without the service's parser."""
    return [
        (int(m.group(1)), int(m.group(2) or m.group(1)))
        for m in ITEM.finditer(value)
        if ":" not in value
    ]


@settings(max_examples=200, deadline=None)
@given(st.from_regex(CHANNELS_PATTERN, fullmatch=True))
def test_every_channel_value_the_pattern_admits_is_read(value: str) -> None:
    ranges = _ranges(value)
    backwards = any(stop < start for start, stop in ranges)
    too_many = sum(stop - start + 1 for start, stop in ranges if stop >= start) > 65536
    if backwards or too_many:  # what no regex states: its own 422, naming the grammar
        with pytest.raises(InvalidInput) as info:
            FeatureMapOptions(channels=value)
        assert info.value.field == "channels"
        assert "backwards" in info.value.detail or "more than 65536" in info.value.detail
        return
    assert FeatureMapOptions(channels=value).channels == value
    assert FilterOptions(channels=value, inputs=value).inputs == value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=24))
def test_every_channel_value_the_pattern_refuses_is_a_422(value: str) -> None:
    if re.fullmatch(CHANNELS_PATTERN, value):
        return
    with pytest.raises(InvalidInput) as info:
        FilterOptions(inputs=value)
    assert info.value.field == "inputs"


@pytest.mark.parametrize("value", ["ALL", "First:8", "0,\t3", "\u0663", "first:08", " all\n"])
def test_what_only_the_lenient_parser_read_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        FeatureMapOptions(channels=value)
    assert info.value.extra["grammar"].startswith("all | first:N")


@settings(max_examples=200, deadline=None)
@given(st.from_regex(REFERENCES_PATTERN, fullmatch=True))
def test_every_reference_the_pattern_admits_is_resolved(value: str) -> None:
    """A name or index the catalog lacks is a 404 or an out-of-range 422, never a
    malformed reference."""
    catalog = DatasetCatalog()
    for part in value.split(","):
        try:
            dataset, index = catalog.resolve(part.strip())
        except NotFound as exc:
            assert exc.field == "image"
        except InvalidInput as exc:
            assert "out of range" in exc.detail
        else:
            assert dataset.name == "digits" and 0 <= index < len(dataset)


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("channels=%200,%202%20", 200, None),
        ("channels=ALL", 422, "channels"),
        ("channels=2-1", 422, "channels"),
        ("channels=first:4&image=dataset:digits/3,%20dataset:digits/4", 200, None),
        ("image=", 422, "image"),
        ("image=digits/3", 422, "image"),
        ("colormap=magma", 200, None),
        ("colormap=Magma", 422, "colormap"),
    ],
)
def test_the_server_keeps_the_documented_patterns(
    tiny_client: TestClient, tiny_inputs: list[bytes], query: str, status: int, field: str | None
) -> None:
    files = [("image", ("a.png", tiny_inputs[0], "image/png"))]
    answer = tiny_client.post(f"{FM}?format=npy&{query}", files=files)
    if field is None:
        assert answer.status_code == status, answer.text
    else:
        error_body(answer, status, field)


def test_the_document_carries_the_patterns(tiny_client: TestClient) -> None:
    params = {
        p["name"]: p["schema"]
        for p in tiny_client.get("/openapi.json").json()["paths"][
            "/v1/models/{model}/feature-maps"
        ]["post"]["parameters"]
    }
    assert params["channels"]["pattern"] == CHANNELS_PATTERN
    assert params["image"]["anyOf"][0]["items"]["pattern"] == REFERENCES_PATTERN
    assert "viridis" in params["colormap"]["enum"]
