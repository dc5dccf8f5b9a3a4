"""Small helpers shared by tests: encode pictures, build configs, read answers."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def png(image: Image.Image | np.ndarray, fmt: str = "PNG") -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def files(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart `image` fields, one per picture, in order."""
    return [("image", (f"img{i}.png", data, "image/png")) for i, data in enumerate(images)]


def error_body(answer, status: int, field: str | None) -> dict:
    """The JSON error of `answer`: its status, a non-empty detail and (when given) the field it
    names are checked."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert body["field"] == field
    return body


def load_npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


def seeded_resnet(seed: int = 7, num_classes: int = 10) -> torch.nn.Module:
    """A resnet18 with seeded random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=num_classes)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def write_resnet_config(
    folder: Path, *, seed: int = 7, size: int = 64, suffix: str = ".safetensors"
) -> Path:
    """A models TOML serving a seeded resnet18 whose weights live in a file next to it."""
    model = seeded_resnet(seed)
    weights = folder / f"resnet-seed{seed}{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(weights))
    else:
        torch.save(state, weights)
    config = folder / "models.toml"
    labels = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    config.write_text(
        resnet18_entry("tiny-resnet", 10, size=size, weights=weights.name, labels=labels)
    )
    return config


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    return repr(value)


def toml_table(kind: str, **fields: object) -> str:
    """One `[[kind]]` table of a models file (`models` or `datasets`), fields in order; a
    field that is None is left out."""
    lines = [f"{key} = {_toml(value)}" for key, value in fields.items() if value is not None]
    return f"\n[[{kind}]]\n" + "".join(line + "\n" for line in lines)


def digits_entry(labels: list[str] | None = None) -> str:
    """A models-TOML entry serving the built-in digits model, optionally with other labels."""
    return toml_table(
        "models",
        name="digits",
        architecture="builtin:digits",
        weights="builtin:digits",
        input_size=[32, 32],
        mean=[0.5],
        std=[0.5],
        num_classes=10,
        labels=labels or None,
    )


def factory_entry(name: str, **more: object) -> str:
    """A models-TOML entry: a 3-class, 32 x 32 RGB model built by `make` in the folder's
    factory.py, with `more` fields."""
    return toml_table(
        "models",
        name=name,
        architecture="python:factory.py:make",
        input_size=[32, 32],
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        num_classes=3,
        **more,
    )


def resnet18_entry(name: str, num_classes: int, *, size: int = 64, **more: object) -> str:
    """A models-TOML entry: torchvision's resnet18 at `size` x `size` with ImageNet's mean and
    std, and `more` fields (random weights unless `weights` is one)."""
    return toml_table(
        "models",
        name=name,
        architecture="torchvision:resnet18",
        input_size=[size, size],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        num_classes=num_classes,
        **more,
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """`python -m service.cli serve` in a subprocess on a free port."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        import os
        import subprocess
        import sys
        import tempfile

        root = Path(__file__).resolve().parents[1]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {
            **os.environ,
            "PYTHONPATH": str(root),
            "LAYERSCOPE_DEVICE": "cpu",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)],
            cwd=root,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90) -> LiveServer:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready: {Path(self.log.name).read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a test may have left it frozen
            self.process.terminate()
        return self.process.wait(timeout=60)

    def output(self) -> str:
        return Path(self.log.name).read_text()


@contextmanager
def serving(env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """A ready `LiveServer`, stopped afterwards (also when it never became ready)."""
    live = LiveServer(env)
    try:
        yield live.wait_ready()
    finally:
        live.stop()


def device_runner():
    """A job runner on a real CPU device worker, as the service runs jobs."""
    import math
    from concurrent.futures import Future

    from service.workers.device_worker import DeviceWorker, Work

    worker = DeviceWorker(torch.device("cpu"), max_batch=1, max_wait_s=0.0)

    def start(call) -> Future:
        return worker.submit(
            Work(
                key=None,
                payload=None,
                size=1,
                execute=lambda _payloads: [call()],
                deadline=math.inf,
                model="jobs",
            )
        )

    return start


def wait_for(predicate: Callable[[], bool], *, limit_s: float = 30.0) -> None:
    """Poll until `predicate()` holds; a bound against hangs, not a timing assertion."""
    end = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def run_job(api: Any, url: str) -> tuple[dict, dict]:
    """(the finished job's body, its result) for a POST to `url` that answers 202 with a job."""
    accepted = api.post(url)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    assert location == f"/v1/jobs/{accepted.json()['id']}"
    end = time.monotonic() + 300  # a bound against hangs, not a timing assertion
    while (body := api.get(location).json())["status"] in ("queued", "running"):
        assert time.monotonic() < end, body
        time.sleep(0.05)
    assert body["status"] == "succeeded", body
    return body, api.get(f"{location}/result").json()


def whole_and_sliced(work: Any, size: int) -> tuple[Any, Any]:
    """A `ShardedWork` run whole and in slices of `size` (each partial packed and unpacked as
    between replicas): the two `Encoded` answers, for tests that the merge loses nothing."""
    from service.engine.progress import no_progress

    return work.whole()(no_progress), work.in_slices(size)(no_progress)
