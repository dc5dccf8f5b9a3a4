"""A real scale-out: redis-server, two `layerscope serve` replicas (built-in digits model
only, so they start fast) and nginx configured from deploy/nginx.conf, all on loopback."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import LiveServer, digits_entry
from tests.redis_support import NGINX, Nginx, RedisServer, need, wait_for

FINISHED = ("succeeded", "failed", "cancelled")
SETTINGS = {
    "LAYERSCOPE_LOG_LEVEL": "warning",
    # Short lease and heartbeat so a lost replica's job is taken over within seconds.
    "LAYERSCOPE_REDIS_LEASE_S": "3",
    "LAYERSCOPE_REDIS_HEARTBEAT_S": "0.25",
}


class Cluster:
    def __init__(
        self, folder: Path, *, env: dict[str, str] | None = None, persistent: bool = False
    ) -> None:
        need(NGINX)
        self.models = folder / "models.toml"
        self.models.write_text(digits_entry())
        self.env = env or {}
        self.redis = RedisServer(persistent=persistent)
        self.replicas: list[LiveServer] = []
        self.nginx: Nginx | None = None

    def start(self) -> Cluster:
        self.redis.start()
        env = {**SETTINGS, **self.env, "LAYERSCOPE_MODELS": str(self.models)}
        env["LAYERSCOPE_REDIS_URL"] = self.redis.url
        self.replicas = [LiveServer(env), LiveServer(env)]
        for replica in self.replicas:
            replica.wait_ready()
        self.nginx = Nginx([replica.port for replica in self.replicas]).start()
        return self

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    def replica(self, name: str) -> LiveServer:
        """The replica a job record names (its name ends with the process id)."""
        (found,) = [r for r in self.replicas if name.endswith(f"-{r.process.pid}")]
        return found

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for replica in self.replicas:
            replica.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Shared by the tests that leave every part running."""
    running = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """For a test that kills a replica or stops Redis."""
    running = Cluster(tmp_path)
    try:
        yield running.start()
    finally:
        running.stop()


def job(url: str, job_id: str) -> dict:
    answer = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def finished(url: str, job_id: str, timeout: float = 300) -> dict:
    return wait_for(
        lambda: (body := job(url, job_id))["status"] in FINISHED and body,
        f"job {job_id} to finish",
        timeout=timeout,
        every=0.1,
    )


def npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content))
