"""Fixtures shared by the route tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.insight_support import client


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The insight test app (tests/insight_support.py) with room for test-sized jobs: 600
    steps, 128 px. One per module, so jobs and stored images do not cross modules."""
    with client(
        tmp_path_factory.mktemp("api"), max_insight_steps=600, max_insight_size=128
    ) as test_client:
        yield test_client
