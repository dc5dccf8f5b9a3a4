"""openapi-python-client, run on the service's own /openapi.json, gives a client that works
unpatched against a live server: uploads, PNG and npy answers, method names, job polling."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import LiveServer, files, load_npy, seeded_resnet, serving
from tests.numerics import assert_float32_close
from tests.routes.test_api_feature_maps import reference_batch

KEY = "generated-client-key"
MODEL = "tiny-resnet"


@pytest.fixture(scope="module")
def server(tiny_config: Path) -> Iterator[LiveServer]:
    env = {"LAYERSCOPE_MODELS": str(tiny_config), "LAYERSCOPE_API_KEYS": f"alice:{KEY}"}
    with serving({**env, "LAYERSCOPE_TORCH_THREADS": "1"}) as live:
        yield live


@pytest.fixture(scope="module")
def generated(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The package openapi-python-client writes for the served document, imported."""
    folder = tmp_path_factory.mktemp("client")
    spec = folder / "openapi.json"
    spec.write_bytes(httpx.get(f"{server.url}/openapi.json").content)
    tools = str(Path(sys.executable).parent)  # its post-hooks call ruff from the same venv
    env = {**os.environ, "PATH": tools + os.pathsep + os.environ.get("PATH", "")}
    run = subprocess.run(
        [
            str(Path(tools) / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(folder / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # Every operation made it into the client: a warning means a piece was left out.
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(folder / "out"))
    try:
        yield importlib.import_module("layerscope_client")
    finally:
        sys.path.remove(str(folder / "out"))
        for name in [n for n in sys.modules if n.split(".")[0] == "layerscope_client"]:
            del sys.modules[name]


def _api(module: str) -> ModuleType:
    return importlib.import_module(f"layerscope_client.{module}")


@pytest.fixture(scope="module")
def client(generated: ModuleType, server: LiveServer) -> Iterator[object]:
    with generated.AuthenticatedClient(
        base_url=server.url, token=KEY, raise_on_unexpected_status=True, timeout=120
    ) as authenticated:
        yield authenticated


def _upload(body_class: str, *pictures: bytes) -> object:
    models, types = _api("models"), _api("types")
    files_ = [
        types.File(payload=io.BytesIO(p), file_name=f"{i}.png", mime_type="image/png")
        for i, p in enumerate(pictures)
    ]
    return getattr(models, body_class)(image=files_)


def test_models_are_listed_and_keys_are_required(generated: ModuleType, client) -> None:
    list_models = _api("api.models.list_models")
    listed = list_models.sync(client=client)
    assert [m.name for m in listed.data] == [MODEL] and listed.count == 1
    assert listed.data[0].input_size == [64, 64]
    anonymous = generated.Client(base_url=client._base_url)
    answer = list_models.sync_detailed(client=anonymous)
    assert answer.status_code == 401 and answer.parsed.field == "authorization"


def test_an_upload_then_feature_maps_as_npy_equal_a_hook(client, tiny_inputs) -> None:
    models, types = _api("models"), _api("types")
    stored = _api("api.images.store_image").sync(
        client=client,
        body=models.StoreImageUpload(
            image=types.File(payload=io.BytesIO(tiny_inputs[0]), file_name="a.png")
        ),
    )
    assert (stored.width, stored.height, stored.format_) == (64, 64, "PNG")
    answer = _api("api.feature_maps.feature_maps").sync_detailed(
        MODEL,
        client=client,
        layers="layer1",
        channels="all",
        format_=models.OutputFormat.NPY,
        image_id=[stored.image_id],
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-npy"
    values = load_npy(answer.parsed.payload.read())
    model = seeded_resnet(7)
    captured: list[torch.Tensor] = []
    handle = model.layer1.register_forward_hook(lambda _m, _i, o: captured.append(o.clone()))
    try:
        with torch.no_grad():
            model(reference_batch(tiny_inputs[:1]))
    finally:
        handle.remove()
    assert values.shape == tuple(captured[0].shape)
    # The server runs another batch composition (or kernel) than this reference: float32
    # rounding of another summation order, see tests/numerics.py.
    assert_float32_close(values, captured[0])


def test_grad_cam_as_json_and_png(client, server: LiveServer, tiny_inputs) -> None:
    models, cam = _api("models"), _api("api.attributions.cam")
    answers = {}
    for method in (models.CamMethod.GRADCAM, models.CamMethod.GRADCAM_PLUS_PLUS):
        answer = cam.sync_detailed(
            MODEL,
            client=client,
            body=_upload("CamUpload", tiny_inputs[0]),
            method=method,
            format_=models.OutputFormat.JSON,
            target="3",
        )
        assert answer.status_code == 200, answer.content
        body = models.CamResponse.from_dict(json.loads(answer.parsed.payload.read()))
        assert body.method.value == method.value  # each member asks for its own method
        assert [t.class_index for t in body.targets[0]] == [3]
        answers[method.value] = body
    assert answers["gradcam"].maps[0].max_ != answers["gradcam++"].maps[0].max_
    picture = cam.sync(MODEL, client=client, body=_upload("CamUpload", tiny_inputs[0]), target="3")
    image = Image.open(picture.payload)
    assert image.format == "PNG" and image.width >= 64 and image.height >= 64
    # the same request sent by hand: the generated client sent the upload as a file
    direct = httpx.post(
        f"{server.url}/v1/models/{MODEL}/cam",
        params={"target": "3", "format": "npy"},
        files=files(tiny_inputs[0]),
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    )
    generated_npy = cam.sync(
        MODEL,
        client=client,
        body=_upload("CamUpload", tiny_inputs[0]),
        target="3",
        format_=models.OutputFormat.NPY,
    )
    np.testing.assert_allclose(
        load_npy(generated_npy.payload.read()), load_npy(direct.content), rtol=1e-6, atol=1e-7
    )


def test_a_job_is_polled_to_its_result(client, tiny_inputs) -> None:
    models, cam = _api("models"), _api("api.attributions.cam")
    get_job, get_result = _api("api.jobs.get_job"), _api("api.jobs.get_job_result")
    started = cam.sync_detailed(
        MODEL,
        client=client,
        body=_upload("CamUpload", *tiny_inputs[:2]),
        method=models.CamMethod.LAYERCAM,
        format_=models.OutputFormat.NPY,
        async_=True,
    )
    assert started.status_code == 202, started.content
    job = started.parsed
    assert isinstance(job, models.JobBody) and started.headers["location"] == f"/v1/jobs/{job.id}"
    end = time.monotonic() + 120  # a bound against a hang, not a timing assertion
    while job.status.value in ("queued", "running"):
        assert time.monotonic() < end, "the job never finished"
        time.sleep(0.05)
        job = get_job.sync(job.id, client=client)
    assert (
        job.status == models.JobStatus.SUCCEEDED and job.result_url == f"/v1/jobs/{job.id}/result"
    )
    result = get_result.sync_detailed(job.id, client=client)
    assert result.headers["content-type"] == "application/x-npy"
    maps = load_npy(result.parsed.payload.read())
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    now = cam.sync(
        MODEL,
        client=client,
        body=_upload("CamUpload", *tiny_inputs[:2]),
        method=models.CamMethod.LAYERCAM,
        format_=models.OutputFormat.NPY,
    )
    np.testing.assert_allclose(maps, load_npy(now.payload.read()), rtol=1e-5, atol=1e-6)
    cancelled = _api("api.jobs.delete_job").sync(job.id, client=client)
    assert cancelled.id == job.id
    gone = get_job.sync_detailed(job.id, client=client)
    assert gone.status_code == 404 and isinstance(gone.parsed, models.ErrorBody)
