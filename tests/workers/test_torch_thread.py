"""Every torch operator the service runs, runs on the device thread.

A second thread that calls torch's parallel CPU kernels gets an OpenMP team of its own; two
teams on the same cores make libgomp throttle its spin-waiting, and every forward pass gets
about 1.5x slower (README, "Execution"). So loading, warm-up, preprocessing, forward and
backward passes, reductions and job work all go to the device thread, and rendering and
encoding in the CPU pool use numpy and Pillow only.

The guard records every ATen operator of every thread with torch's profiler
(`profile_all_threads`) while a real app loads its models and serves every kind of request,
then checks that one thread ran them all: the device thread, found by a marker it records.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import torch
from fastapi.testclient import TestClient
from torch._C._profiler import _ExperimentalConfig
from torch.profiler import ProfilerActivity, profile, record_function

from service.app import create_app
from service.settings import Settings
from tests.helpers import digits_entry, files

MARKER = "layerscope-test-device-thread"
TINY = "/v1/models/tiny-resnet"


def _mark() -> None:
    with record_function(MARKER):
        pass


def _wait_for_job(client: TestClient, location: str) -> None:
    for _ in range(1200):
        body = client.get(location).json()
        if body["status"] not in ("queued", "running"):
            assert body["status"] == "succeeded", body
            return
        time.sleep(0.05)
    raise AssertionError(f"job {location} did not finish")


def _exercise(client: TestClient, photo: bytes, digit: bytes) -> None:
    """One request of every kind that runs model work, each checked for success."""
    image_id = client.post("/v1/images", files=files(photo)).json()["image_id"]
    # METHOD path [upload]: the photo, a digit, or nothing (the stored image_id, a weight view)
    calls = f"""
        POST {TINY}/predict?top_k=3 photo
        POST {TINY}/feature-maps?layers=layer1,layer2&channels=top:4 photo
        POST {TINY}/feature-maps?layers=layer2&channels=all&reduce=pca&format=json photo
        POST {TINY}/feature-maps?layers=layer1&overlay=true&format=npy photo
        POST {TINY}/feature-maps?image_id={image_id}&layers=layer3&format=npy
        POST {TINY}/feature-maps?image_id={image_id}&layers=layer3&channels=top:8
        POST {TINY}/cam?method=gradcam%2B%2B&format=json photo
        POST {TINY}/cam?method=scorecam&format=npy photo
        POST {TINY}/gradients?method=smoothgrad&samples=4&seed=1&format=npy photo
        POST {TINY}/stats photo
        GET {TINY}/layers/conv1/filters?format=png
        POST {TINY}/layers/layer2/maximize?channel=3&steps=4&async=false
        POST {TINY}/layers/layer1/invert?steps=3&async=false photo
        POST /v1/models/digits/predict digit
    """
    uploads = {"photo": photo, "digit": digit}
    for method, url, *upload in (line.split() for line in calls.strip().splitlines()):
        body = {"files": files(uploads[upload[0]])} if upload else {}
        answer = client.request(method, url, **body)
        assert answer.status_code == 200, (url, answer.text[:300])
    job = client.post(f"{TINY}/layers/layer2/maximize?channel=1&steps=4&async=true")
    assert job.status_code == 202, job.text
    _wait_for_job(client, job.headers["location"])
    analysis = client.post(f"{TINY}/datasets/digits/analysis?limit=40&method=pca&layers=layer1")
    assert analysis.status_code == 202, analysis.text
    _wait_for_job(client, analysis.headers["location"])


def _config(tiny_config: Path) -> Path:
    """The tiny resnet of the other tests plus the built-in digits model."""
    config = tiny_config.parent / "with-digits.toml"
    config.write_text(tiny_config.read_text() + digits_entry())
    return config


def test_only_the_device_thread_runs_torch_operators(
    tiny_config: Path, tiny_inputs: list[bytes], digit_pngs: list[bytes]
) -> None:
    settings = Settings(models=_config(tiny_config), device="cpu", torch_threads=2)
    experimental = _ExperimentalConfig(profile_all_threads=True)
    with (
        profile(activities=[ProfilerActivity.CPU], experimental_config=experimental) as prof,
        TestClient(create_app(settings)) as client,
    ):
        client.portal.call(client.app.state.pool.on_device, torch.device("cpu"), _mark)
        _exercise(client, tiny_inputs[0], digit_pngs[0])
    events = list(prof.events())
    device_threads = {e.thread for e in events if e.name == MARKER}
    assert len(device_threads) == 1
    elsewhere = Counter(e.name for e in events if e.thread not in device_threads)
    assert not elsewhere, f"torch operators ran outside the device thread: {elsewhere}"
    on_device = Counter(e.name for e in events if e.thread in device_threads)
    # The guard sees real work: loading, convolutions, backward passes and optimisation.
    for name in ("aten::convolution", "aten::convolution_backward", "aten::normal_"):
        assert on_device[name] > 0, name
