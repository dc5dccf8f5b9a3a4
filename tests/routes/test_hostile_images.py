"""Hostile picture sizes at every stage: the source, the resize a crop plans, and a whole
request's pictures. Each is a JSON 4xx naming the field and the limit, decided from the
headers; the service stays healthy, and a real server's peak memory stays flat."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.settings import Settings
from tests.helpers import error_body, files, png, resnet18_entry, serving

PREDICT = "/v1/models/crop-resnet/predict?top_k=1"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height grey pixels, with one row of data: tiny
    on the wire, enormous if anything believed the header and allocated."""
    return _png(width, height, zlib.compress(b"\x00" * (min(width, 4096) + 1)))


def zero_png(width: int, height: int) -> bytes:
    """A real, fully decodable PNG of zeros: a few KB that inflate to width x height bytes."""
    return _png(width, height, zlib.compress(b"\x00" * (width + 1) * height, 9))


def strip(width: int, height: int) -> bytes:
    """A real RGB picture of width x height (161 bytes as PNG for 1 x 20,002)."""
    return png(Image.new("RGB", (width, height), (40, 160, 90)))


@pytest.fixture(scope="module")
def crop_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 at 64 x 64 fitted as torchvision evaluates: short side to 73, centre 64."""
    folder = tmp_path_factory.mktemp("crop-models")
    (folder / "models.toml").write_text(
        resnet18_entry("crop-resnet", 10, size=64, resize="crop", crop_pct=0.875)
    )
    return folder / "models.toml"


LIMITS = {"max_image_pixels": 1_000_000, "max_request_pixels": 4_000_000, "max_aspect_ratio": 50}


@pytest.fixture(scope="module")
def client(crop_models: Path) -> Iterator[TestClient]:
    settings = Settings(models=crop_models, device="cpu", **LIMITS)
    with TestClient(create_app(settings)) as client:
        yield client


def _healthy(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    normal = client.post(PREDICT, files=files(strip(200, 150)))
    assert normal.status_code == 200, normal.text
    assert len(normal.json()["predictions"][0]) == 1


@pytest.mark.parametrize(("width", "height"), [(1, 20_002), (20_002, 1), (120, 2)])
def test_extreme_aspect_ratio_is_a_422_naming_the_limit(
    client: TestClient, width: int, height: int
) -> None:
    body = error_body(client.post(PREDICT, files=files(strip(width, height))), 422, "image")
    assert body["max_aspect_ratio"] == 50
    assert f"{width}x{height}" in body["detail"] and "max_aspect_ratio" in body["detail"]
    _healthy(client)


def test_aspect_ratio_at_the_limit_is_served(client: TestClient) -> None:
    assert client.post(PREDICT, files=files(strip(100, 2))).status_code == 200


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("declared 100000 x 100000", declared_png(100_000, 100_000)),  # past Pillow's own bound
        ("declared 2000 x 2000", declared_png(2_000, 2_000)),
        ("inflates to 4 Mpx", zero_png(2_000, 2_000)),
    ],
)
def test_too_many_pixels_in_one_picture_is_a_413(
    client: TestClient, name: str, data: bytes
) -> None:
    body = error_body(client.post(PREDICT, files=files(data)), 413, "image")
    assert body["max_pixels"] == LIMITS["max_image_pixels"], name
    _healthy(client)


def test_a_request_past_its_total_pixel_budget_is_a_413(client: TestClient) -> None:
    picture = strip(700, 700)  # 490,000 pixels: each within the per-picture limit
    many = files(*[picture] * 9)  # 4.41 Mpx together, over 4 Mpx
    body = error_body(client.post(PREDICT, files=many), 413, "image")
    assert body["max_request_pixels"] == LIMITS["max_request_pixels"]
    assert "max_request_pixels" in body["detail"]
    assert client.post(PREDICT, files=files(*[picture] * 8)).status_code == 200
    _healthy(client)


def test_stored_pictures_count_against_the_request_budget(client: TestClient) -> None:
    stored = client.post("/v1/images", files={"image": ("a.png", strip(700, 700), "image/png")})
    assert stored.status_code == 200, stored.text
    ids = ",".join([stored.json()["image_id"]] * 9)
    body = error_body(client.post(f"{PREDICT}&image_id={ids}"), 413, "image")
    assert body["max_request_pixels"] == LIMITS["max_request_pixels"]


def test_a_truncated_picture_is_a_415(client: TestClient, photo_images) -> None:
    whole = png(photo_images["china.jpg"].resize((200, 150)))
    for cut in (whole[: len(whole) // 2], png(photo_images["china.jpg"], fmt="JPEG")[:3000]):
        body = error_body(client.post(PREDICT, files=files(cut)), 415, "image")
        assert "truncated or corrupt" in body["detail"]
    _healthy(client)


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


PEAK_GROWTH = 200 * 2**20


def test_hostile_pictures_leave_a_real_servers_peak_memory_flat(crop_models: Path) -> None:
    """A subprocess server that admits any aspect ratio: the strips are served through the
    crop's own region (a whole resize would be 256 x 5.12 M pixels, 3.9 GB), the rest are
    refused from their headers, and the peak resident memory barely moves."""
    env = {
        "LAYERSCOPE_MODELS": str(crop_models),
        "LAYERSCOPE_MAX_ASPECT_RATIO": "1000000",
        "LAYERSCOPE_MAX_IMAGE_PIXELS": "40000000",
        "LAYERSCOPE_LOG_LEVEL": "warning",
    }
    with serving(env) as live, httpx.Client(base_url=live.url, timeout=120) as http:
        url = PREDICT
        assert http.post(url, files=files(strip(300, 200))).status_code == 200
        before = _peak_rss(live.process.pid)
        for picture in (strip(1, 20_002), strip(20_002, 1)):
            answer = http.post(url, files=files(*[picture] * 32))
            assert answer.status_code == 200, answer.text
            fitting = answer.json()["fitting"][0]
            assert fitting["resize"] == "crop"
            assert np.prod(fitting["source_size"]) == 20_002
        hostile = [
            (declared_png(100_000, 100_000), 413),
            (zero_png(8_000, 8_000), 413),  # 64 Mpx, about 60 KB on the wire
            (strip(1, 20_002)[:60], 415),
        ]
        for data, status in hostile:
            assert http.post(url, files=files(*[data] * 32)).status_code == status
        many = files(*[zero_png(4_000, 4_000)] * 32)  # 16 Mpx each, 512 Mpx together
        assert http.post(url, files=many).status_code == 413
        assert http.post(url, files=files(strip(300, 200))).status_code == 200
        growth = _peak_rss(live.process.pid) - before
        assert growth < PEAK_GROWTH, f"peak RSS grew {growth / 2**20:.0f} MiB"


def test_a_hostile_picture_is_refused_when_stored(client: TestClient) -> None:
    upload = {"image": ("strip.png", strip(1, 20_002), "image/png")}
    body = error_body(client.post("/v1/images", files=upload), 422, "image")
    assert body["max_aspect_ratio"] == 50
    bomb = {"image": ("bomb.png", declared_png(100_000, 100_000), "image/png")}
    assert error_body(client.post("/v1/images", files=bomb), 413, "image")["max_pixels"]
