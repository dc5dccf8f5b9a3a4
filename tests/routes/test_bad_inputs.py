"""Bad inputs: whatever a client sends, a JSON 4xx within a second; the service stays healthy."""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import files, png

FM = "/v1/models/resnet18/feature-maps"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(side: int) -> bytes:
    """A valid grayscale PNG of side x side zeros: a few hundred KB that inflate to side^2 bytes."""
    raw = zlib.compress(b"\x00" * (side + 1) * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")
    )


def _gif_header_bomb() -> bytes:
    """A GIF whose logical screen claims 65535 x 65535 pixels."""
    return (
        b"GIF89a"
        + struct.pack("<HH", 65535, 65535)
        + b"\x00\x00\x00"
        + b",\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02D\x01\x00;"
    )


def _images(photo) -> dict[str, tuple[bytes, set[int]]]:
    jpeg = png(photo, fmt="JPEG")
    real_png = png(photo.resize((64, 64)))
    return {
        "garbage": (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), {415}),
        "text": (b"<?php system($_GET['c']); ?>", {415}),
        "html": (b"<html><script>alert(1)</script></html>", {415}),
        "png magic only": (b"\x89PNG\r\n\x1a\n", {415, 422}),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], {415}),
        "truncated png": (real_png[: len(real_png) // 2], {415}),
        "png bomb (100 Mpx)": (_png_bomb(10_000), {413}),
        "gif header bomb": (_gif_header_bomb(), {413, 415, 422}),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', {415}),
        "pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", {415}),
        "zip": (b"PK\x03\x04" + b"\x00" * 100, {415}),
        "ico": (png(Image.new("RGB", (32, 32)), fmt="ICO"), {415}),
    }


@pytest.mark.parametrize(
    "name",
    [
        "garbage",
        "text",
        "html",
        "png magic only",
        "truncated jpeg",
        "truncated png",
        "png bomb (100 Mpx)",
        "gif header bomb",
        "svg",
        "pdf",
        "zip",
        "ico",
    ],
)
def test_bad_images(default_client: TestClient, photo_images, name: str) -> None:
    data, statuses = _images(photo_images["china.jpg"])[name]
    started = time.monotonic()
    answer = default_client.post(f"{FM}?layers=conv1&format=npy", files=files(data))
    assert time.monotonic() - started < 1.0
    assert answer.status_code in statuses, answer.text
    assert answer.json()["field"] == "image"
    assert default_client.get("/readyz").status_code == 200


def test_polyglots_are_read_as_the_image_they_start_with(
    default_client: TestClient, photo_images
) -> None:
    """A PNG with a zip or a script appended is still that PNG; the tail is ignored, never run."""
    picture = png(photo_images["flower.jpg"].resize((64, 64)))
    clean = default_client.post(f"{FM}?layers=conv1&channels=0&format=npy", files=files(picture))
    for tail in (b"PK\x03\x04" + b"\x00" * 200, b"<script>alert(1)</script>", b"%PDF-1.4"):
        answer = default_client.post(
            f"{FM}?layers=conv1&channels=0&format=npy", files=files(picture + tail)
        )
        assert answer.status_code == 200 and answer.content == clean.content


@pytest.mark.parametrize(
    "mode",
    ["I;16", "F", "CMYK", "1", "LA", "P", "RGBA", "tiny"],
)
def test_unusual_but_valid_pictures_are_served(default_client: TestClient, mode: str) -> None:
    rng = np.random.default_rng(1)
    if mode == "I;16":
        picture, fmt = Image.fromarray(rng.integers(0, 65535, (40, 30), dtype=np.uint16)), "PNG"
    elif mode == "F":
        picture, fmt = Image.fromarray(rng.random((40, 30), dtype=np.float32)), "TIFF"
    elif mode == "tiny":
        picture, fmt = Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"
    else:
        picture, fmt = Image.new(mode, (40, 30)), "JPEG" if mode == "CMYK" else "PNG"
    for model in ("resnet18", "digits"):
        answer = default_client.post(
            f"/v1/models/{model}/predict?top_k=1", files=files(png(picture, fmt=fmt))
        )
        assert answer.status_code == 200, (mode, model, answer.text)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("channels=" + ",".join(str(i) for i in range(1500)), 422),  # past the layer's 64 channels
        ("channels=0-99999999", 422),
        ("channels=" + "1," * 3000 + "1", 422),  # longer than the field allows
        ("upsample=inf", 422),
        ("upsample=nan", 422),
        ("columns=-1", 422),
        ("columns=1e309", 422),
        ("labels=2", 422),
        ("layers=" + ",".join(["conv1"] * 20), 200),  # duplicates collapse to one
        ("layers=" + ",".join(f"layer{i}" for i in range(40)), 404),
        ("layers=%00", 404),
        ("layers=../../etc/passwd", 404),
        ("format=../../x", 422),
        ("colormap=__import__('os')", 422),
    ],
)
def test_hostile_options(default_client: TestClient, photo_images, query: str, status: int) -> None:
    picture = png(photo_images["china.jpg"].resize((64, 64)))
    started = time.monotonic()
    answer = default_client.post(f"{FM}?{query}", files=files(picture))
    assert time.monotonic() - started < 1.0
    assert answer.status_code == status, answer.text[:300]
    if status != 200:
        assert isinstance(answer.json()["detail"], str)


def test_top_k_nan_and_huge(default_client: TestClient, digit_pngs: list[bytes]) -> None:
    for value in ("nan", "inf", "1e9", "-3", "99999999999999999999999"):
        answer = default_client.post(
            f"/v1/models/digits/predict?top_k={value}", files=files(digit_pngs[0])
        )
        assert answer.status_code == 422 and answer.json()["field"] == "top_k"


@pytest.mark.parametrize(
    "name", ["..", "../digits", "%2e%2e", "C:\\\\models", "~root", "digits;rm -rf", "a" * 500]
)
def test_path_like_model_names_are_plain_404s(
    default_client: TestClient, digit_pngs: list[bytes], name: str
) -> None:
    answer = default_client.post(f"/v1/models/{name}/predict", files=files(digit_pngs[0]))
    assert answer.status_code in (404, 422)
    assert answer.headers["content-type"].startswith("application/json")


def test_too_many_output_tiles_is_413_naming_the_cap(tiny_config, tiny_inputs) -> None:
    from service.app import create_app
    from service.settings import Settings

    with TestClient(
        create_app(
            Settings(models=tiny_config, device="cpu", max_tiles=100, max_output_bytes=2_000_000)
        )
    ) as client:
        url = "/v1/models/tiny-resnet/feature-maps"
        tiles = client.post(f"{url}?layers=layer4&channels=all", files=files(*tiny_inputs))
        assert tiles.status_code == 413 and tiles.json()["max_tiles"] == 100
        size = client.post(
            f"{url}?layers=conv1&channels=all&format=npy", files=files(*tiny_inputs * 8)
        )
        assert size.status_code == 413 and size.json()["max_output_bytes"] == 2_000_000
        assert (
            client.post(
                f"{url}?layers=conv1&channels=all&format=npy", files=files(*tiny_inputs)
            ).status_code
            == 200
        )


def test_service_is_healthy_after_the_suite(default_client: TestClient, china_png: bytes) -> None:
    assert default_client.get("/healthz").status_code == 200
    assert (
        default_client.post(f"{FM}?layers=layer1&format=npy", files=files(china_png)).status_code
        == 200
    )
    for model in default_client.app.state.registry:
        assert all(not m._forward_hooks for m in model.module.modules())
