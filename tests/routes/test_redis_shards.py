"""Every dataset job through the Redis queue in slices (LAYERSCOPE_SHARD_IMAGES): the slices
are saq jobs replayed through the app, their partials stored in Redis and merged by the last,
and each answer equals the one a process without Redis gives in one pass."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.helpers import digits_entry, run_job
from tests.redis_support import RedisServer

SHARD_IMAGES = 16
JOBS = {
    "analysis": "/v1/models/digits/datasets/digits/analysis?method=pca&limit=70&seed=1",
    "units": "/v1/models/digits/datasets/digits/units?layer=relu3&channels=7,2&k=4&limit=70",
    "contributions": "/v1/models/digits/datasets/digits/contributions?layer=relu3&limit=40&top=3",
    "compare": "/v1/compare/datasets/digits?models=digits,digits&limit=40&seed=2",
    "concepts": "/v1/models/digits/datasets/digits/concepts?layer=relu3&k=3&limit=40&seed=2",
    "evaluate": "/v1/models/digits/datasets/digits/evaluate"
    "?methods=gradcam,vanilla&metrics=deletion,sparseness,max-sensitivity&limit=40&seed=2",
}


def _app(models: Path, redis_url: str | None) -> TestClient:
    settings = Settings(
        models=models,
        device="cpu",
        redis_url=redis_url,
        shard_images=SHARD_IMAGES,
        redis_lease_s=3,
        redis_heartbeat_s=0.25,
    )
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shards") / "models.toml"
    path.write_text(digits_entry())
    return path


@pytest.fixture(scope="module")
def one_process(models: Path) -> Iterator[TestClient]:
    with _app(models, None) as client:
        yield client


@pytest.fixture
def sharded(models: Path, redis_server: RedisServer) -> Iterator[TestClient]:
    redis.Redis.from_url(redis_server.url).flushdb()
    with _app(models, redis_server.url) as client:
        yield client


def _same(mine: object, theirs: object, where: str = "") -> None:
    """Equal, floats to float32 rounding (slices batch other pictures together)."""
    if isinstance(theirs, float) and isinstance(mine, float | int):
        assert math.isclose(mine, theirs, rel_tol=1e-4, abs_tol=1e-5), where
    elif isinstance(theirs, dict):
        assert isinstance(mine, dict) and mine.keys() == theirs.keys(), where
        for key in theirs:
            _same(mine[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(mine, list) and len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            _same(a, b, f"{where}[{i}]")
    else:
        assert mine == theirs, where


@pytest.mark.parametrize("kind", list(JOBS))
def test_a_job_in_slices_through_redis_answers_as_one_pass(
    sharded: TestClient, one_process: TestClient, kind: str
) -> None:
    body, result = run_job(sharded, JOBS[kind])
    pictures = body["progress"]["total"]
    shards = body["shards"]
    assert shards is not None and shards["total"] == -(-pictures // SHARD_IMAGES) > 1
    assert shards["done"] == shards["total"] and shards["running"] == []
    assert sum(shards["by_replica"].values()) == shards["total"]
    assert 0 < shards["merge_s"] < body["elapsed_s"]
    assert body["progress"]["step"] == pictures
    whole_body, whole = run_job(one_process, JOBS[kind])
    assert whole_body["shards"] is None
    _same(result, whole)
