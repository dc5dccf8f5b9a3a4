"""Long CAMs as jobs: `async=true` on /cam answers 202, reports progress per batch of masked
passes, and its result is the synchronous answer."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import files, load_npy

CAM = "/v1/models/tiny-resnet/cam"


def _finished(client: TestClient, location: str) -> dict:
    for _ in range(1200):
        body = client.get(location).json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{location} did not finish")


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_a_cam_job_reports_its_masked_passes_and_answers_as_the_call_does(
    tiny_client: TestClient, tiny_inputs: list[bytes], method: str
) -> None:
    params = {"method": method, "layer": "layer1", "target": "3", "format": "npy"}
    direct = tiny_client.post(CAM, params=params, files=files(tiny_inputs[0]))
    assert direct.status_code == 200, direct.text
    started = tiny_client.post(CAM, params={**params, "async": "true"}, files=files(tiny_inputs[0]))
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    body = _finished(tiny_client, location)
    assert body["status"] == "succeeded", body
    progress = body["progress"]
    # layer1 of the tiny resnet has 64 channels: ScoreCAM masks the picture with each live
    # one, AblationCAM ablates each, in batches; the job reports the count of passes done.
    assert progress["total"] == 64 if method == "ablationcam" else 1 < progress["total"] <= 64
    assert progress["step"] == progress["total"] and progress["fraction"] == 1.0
    result = tiny_client.get(f"{location}/result")
    assert np.array_equal(load_npy(result.content), load_npy(direct.content))


def test_cam_async_is_validated_before_a_job_exists(
    tiny_client: TestClient, tiny_inputs: list[bytes]
) -> None:
    answer = tiny_client.post(
        CAM, params={"method": "nope", "async": "true"}, files=files(tiny_inputs[0])
    )
    assert answer.status_code == 422 and answer.json()["field"] == "method"
    answer = tiny_client.post(CAM, params={"async": "maybe"}, files=files(tiny_inputs[0]))
    assert answer.status_code == 422
