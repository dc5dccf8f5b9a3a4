"""PNG answers decode, with Pillow, to exactly the pixels that were encoded: the fast
path's writer (`model_registry.fast_paths.png`) and Pillow's encoder, its switched-off
path, alike."""

from __future__ import annotations

import concurrent.futures
import io
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from model_registry.fast_paths import png as fast_png
from service.engine import encode
from service.engine.encode import png_bytes


@pytest.fixture(params=[True, False], ids=["writer", "pillow"])
def encoder(request: pytest.FixtureRequest) -> object:
    """Each test that takes it runs with the fast PNG writer and with Pillow's encoder."""
    encode.use_fast_png(request.param)
    try:
        yield request.param
    finally:
        encode.use_fast_png(True)


@pytest.mark.parametrize(
    ("shape", "mode"),
    [
        ((37, 53), "L"),
        ((37, 53, 3), "RGB"),
        ((37, 53, 4), "RGBA"),
        ((1, 1, 3), "RGB"),
        ((1, 300), "L"),
        ((300, 1, 3), "RGB"),
    ],
)
def test_png_round_trips_through_pillow(shape: tuple[int, ...], mode: str, encoder: bool) -> None:
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(png_bytes(pixels)))
    decoded.load()  # checks every chunk's CRC and the deflate stream
    assert decoded.mode == mode
    assert np.array_equal(np.asarray(decoded), pixels)


def test_png_of_a_rendered_panel_round_trips(china_png: bytes, encoder: bool) -> None:
    """Real picture content (smooth areas, edges), not only noise."""
    pixels = np.asarray(Image.open(io.BytesIO(china_png)).convert("RGB"))
    encoded = png_bytes(pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encoded))), pixels)
    assert len(encoded) < pixels.nbytes  # the Up filter and deflate do compress a photo


def test_png_refuses_non_byte_pixels(encoder: bool) -> None:
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((4, 4, 2), np.uint8))


def test_the_writer_and_pillow_give_the_same_pixels(china_png: bytes) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(china_png)).convert("RGB"))
    encoded = {}
    for fast in (True, False):
        encode.use_fast_png(fast)
        try:
            encoded[fast] = png_bytes(pixels)
        finally:
            encode.use_fast_png(True)
    assert encoded[True] != encoded[False]  # two encoders, really
    decoded = [np.asarray(Image.open(io.BytesIO(data))) for data in encoded.values()]
    assert np.array_equal(decoded[0], decoded[1])


@pytest.mark.parametrize(
    "shape",
    [(480, 640, 3), (481, 640, 3), (2, 50_000, 3), (1, 300_000), (700, 400, 4)],
    ids=["even rows", "odd rows", "two rows", "one row", "rgba"],
)
def test_big_pictures_deflated_in_two_bands_round_trip(shape: tuple[int, ...]) -> None:
    """Pictures of 256 KB or more are deflated in two bands; the stream and its Adler-32
    must still be exactly one valid zlib stream of the whole picture."""
    rng = np.random.default_rng(sum(shape))
    smooth = np.cumsum(rng.integers(0, 3, shape, dtype=np.uint8), axis=0, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(png_bytes(smooth)))
    decoded.load()
    assert np.array_equal(np.asarray(decoded), smooth)


def test_a_busy_helper_never_makes_the_encoder_wait() -> None:
    """With the helper thread blocked, the caller takes the lower band back and encodes the
    whole picture itself (a wait here would hang until the blocker is released)."""
    release = threading.Event()
    blocker = fast_png._HELPER.submit(release.wait, 60)
    try:
        pixels = np.random.default_rng(7).integers(0, 256, (512, 512, 3), dtype=np.uint8)
        done = concurrent.futures.ThreadPoolExecutor(1).submit(png_bytes, pixels)
        encoded = done.result(timeout=30)
        assert not blocker.done()  # the helper was busy the whole time
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(encoded))), pixels)
    finally:
        release.set()
        blocker.result(timeout=30)


@pytest.mark.parametrize("lengths", [(0, 5), (5, 0), (1, 1), (65_521, 3), (100_000, 200_001)])
def test_adler32_combine_matches_the_checksum_of_the_joined_bytes(
    lengths: tuple[int, int],
) -> None:
    rng = np.random.default_rng(sum(lengths))
    first, second = (rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths)
    combined = fast_png._adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)
