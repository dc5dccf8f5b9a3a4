"""Real redis-server and nginx processes for the scale-out tests, on free loopback ports.

Without the binaries the tests skip, except under `make test` (REQUIRE_SCALEOUT=1), which
installs Debian's redis-server and nginx first and makes their absence a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")


def need(binary: str) -> str:
    """The binary's path; skip (or fail under REQUIRE_SCALEOUT=1) when it is missing."""
    path = binary if os.access(binary, os.X_OK) else shutil.which(Path(binary).name)
    if path is None:
        reason = f"{binary} is not installed"
        if os.environ.get("REQUIRE_SCALEOUT") == "1":
            pytest.fail(f"{reason} (REQUIRE_SCALEOUT=1; `make test` installs it)")
        pytest.skip(reason)
    return path


def wait_for(check, what: str, timeout: float = 60.0, every: float = 0.05):  # noqa: ANN001, ANN201
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class RedisServer:
    """redis-server on a loopback port: no RDB snapshots, a temp dir, and an append-only file
    only when `persistent` (as the compose and Kubernetes Redis keep one).

    `stop()` and `start()` keep the port, so clients see an outage and a return (with the
    data when `persistent`, empty otherwise)."""

    def __init__(self, *, persistent: bool = False) -> None:
        self.persistent = persistent
        self.binary = need(REDIS_SERVER)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="layerscope-redis-")
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always"]
        args += ["--dir", self.dir, "--protected-mode", "no"]
        log = open(Path(self.dir) / "redis.log", "a")  # noqa: SIM115
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_for(up, f"redis-server on port {self.port}", timeout=30)
        client.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


class Nginx:
    """nginx in the foreground with deploy/nginx.conf, its upstream servers and listen port
    replaced by loopback ones and its temp paths under a temp prefix."""

    def __init__(self, upstreams: list[int]) -> None:
        self.binary = need(NGINX)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = Path(tempfile.mkdtemp(prefix="layerscope-nginx-"))
        self.prefix.chmod(0o755)  # workers run as another user when nginx starts as root
        (self.prefix / "logs").mkdir()
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(configure(upstreams, self.port, self.prefix))
        self.process: subprocess.Popen | None = None

    def start(self) -> Nginx:
        args = [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", "stderr"]
        log = open(self.prefix / "logs" / "stderr.log", "a")  # noqa: SIM115
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        import httpx

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.output()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, f"nginx on port {self.port}", timeout=30)
        return self

    def output(self) -> str:
        return (self.prefix / "logs" / "stderr.log").read_text()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def configure(upstreams: list[int], port: int, prefix: Path) -> str:
    """deploy/nginx.conf for a test: loopback upstreams and port, temp paths, foreground."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    named = sorted(set(re.findall(r"server layerscope-(\d+):8000", text)))
    assert len(named) == len(upstreams), f"deploy/nginx.conf names replicas {named}"
    for number, upstream in zip(named, upstreams, strict=True):
        text = text.replace(f"server layerscope-{number}:8000", f"server 127.0.0.1:{upstream}")
    text = re.sub(r"listen 80;", f"listen 127.0.0.1:{port};", text)
    temp = "".join(
        f"    {name}_temp_path {prefix}/{name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp + f"    access_log {prefix}/logs/a.log;\n")
    header = f"daemon off;\npid {prefix}/nginx.pid;\nerror_log stderr warn;\n"
    return header + text
