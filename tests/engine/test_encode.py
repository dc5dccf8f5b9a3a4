"""PNG answers decode, with Pillow, to exactly the pixels that were encoded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.engine.encode import png_bytes


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
def test_png_round_trips_through_pillow(shape: tuple[int, ...], mode: str) -> None:
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(png_bytes(pixels)))
    decoded.load()  # checks every chunk's CRC and the deflate stream
    assert decoded.mode == mode
    assert np.array_equal(np.asarray(decoded), pixels)


def test_png_of_a_rendered_panel_round_trips(china_png: bytes) -> None:
    """Real picture content (smooth areas, edges), not only noise."""
    pixels = np.asarray(Image.open(io.BytesIO(china_png)).convert("RGB"))
    encoded = png_bytes(pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encoded))), pixels)
    assert len(encoded) < pixels.nbytes  # the Up filter and deflate do compress a photo


def test_png_refuses_non_byte_pixels() -> None:
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((4, 4), np.float32))
