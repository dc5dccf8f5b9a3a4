"""The shipped digits model reads a digit however it is drawn: >= 97% on every rendering."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from model_registry.builtin import digits
from model_registry.config import default_specs
from model_registry.loading import build_model


class Rendering(NamedTuple):
    method: str
    size: int


RENDERINGS = [
    Rendering(method, size)
    for method in digits.RESAMPLING
    for size in (8, 12, 16, 24, 32, 48, 64, 128, 256)
]


@pytest.fixture(scope="module")
def split() -> digits.DigitsSplit:
    return digits.load_split()


@pytest.fixture(scope="module")
def shipped() -> object:
    built = build_model(default_specs()[0])
    assert built.pretrained
    return built.module


@pytest.mark.parametrize("rendering", RENDERINGS, ids=[f"{r.method}-{r.size}" for r in RENDERINGS])
def test_held_out_digits_drawn_any_way_reach_97_percent(
    rendering: Rendering, split: digits.DigitsSplit, shipped: object
) -> None:
    shift = digits.max_shift(rendering.size)  # 2 px, at most 1/16 of the side
    for dy, dx in ((0, 0), (shift, -shift), (-shift, shift), (shift, shift)):
        x = digits.rendered(split.test_images, rendering.size, rendering.method, (dy, dx))
        assert x.shape == (len(split.test_y), 1, 32, 32)
        accuracy = digits.accuracy(shipped, x, split.test_y)
        assert accuracy >= 0.97, (rendering, (dy, dx), accuracy)


def test_rendering_is_what_the_service_is_sent() -> None:
    """A 2 px shift moves the strokes by 2 px at the rendered size; nothing else changes."""
    import numpy as np

    pixels = np.zeros((8, 8))
    pixels[3, 3] = 16
    still = np.asarray(digits.render(pixels, 64, "nearest"))
    moved = np.asarray(digits.render(pixels, 64, "nearest", (2, -2)))
    assert still.shape == moved.shape == (64, 64)
    assert np.array_equal(moved[2:, :-2], still[:-2, 2:])
    assert (still[24:32, 24:32] == 255).all() and still.sum() == 255 * 64
