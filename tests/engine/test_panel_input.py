"""The input picture beside the grids: as tall as they are, but a photo is never enlarged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from service.engine.feature_maps import (
    MAX_INPUT_DISPLAY,
    MIN_INPUT_DISPLAY,
    FeatureMaps,
    LayerMaps,
    render_feature_maps,
)
from service.engine.render import RenderOptions, input_picture

MARGIN, TITLE, GAP = 8, 18, 2


def photo(size: int) -> np.ndarray:
    china = load_sample_images().images[0]
    return np.ascontiguousarray(china[:size, 100 : 100 + size])


def maps_of(pixels: np.ndarray, tiles: int, size: int = 28) -> FeatureMaps:
    values = np.random.default_rng(0).random((1, tiles, size, size), dtype=np.float32)
    layer = LayerMaps("layer2", (tiles, size, size), values, np.arange(tiles)[None])
    return FeatureMaps((layer,), pixels[None], "none")


def input_width(panel: np.ndarray) -> int:
    """Width of the input picture: from the left margin to the first white column."""
    row = panel[MARGIN + TITLE + 2, MARGIN:]
    return int(np.argmax((row == 255).all(axis=1)))


@pytest.mark.parametrize(
    ("side", "tiles", "expected"),
    [
        (224, 36, 224),  # a 6 x 6 grid of 64 px tiles is 394 px tall: the photo stays 224
        (224, 4, MIN_INPUT_DISPLAY + 2),  # 2 x 2 tiles, 130 px tall: drawn 130, smaller
        (400, 36, MAX_INPUT_DISPLAY),  # larger than the grid's 394 px: the cap, 320
        (64, 36, MAX_INPUT_DISPLAY),  # smaller than 128 px: enlarged to the grid's height
        (64, 1, MIN_INPUT_DISPLAY),
    ],
)
def test_input_follows_the_grid_but_is_not_enlarged(side: int, tiles: int, expected: int) -> None:
    pixels = photo(side)
    panel = render_feature_maps(maps_of(pixels, tiles), RenderOptions(labels=False))
    columns = int(np.ceil(np.sqrt(tiles)))
    grid_height = int(np.ceil(tiles / columns)) * (64 + GAP) - GAP
    assert panel.shape[0] == MARGIN + TITLE + max(grid_height, expected) + MARGIN
    assert input_width(panel) == expected
    shown = panel[MARGIN + TITLE : MARGIN + TITLE + expected, MARGIN : MARGIN + expected]
    if expected == side:  # drawn at its own size: the very pixels
        np.testing.assert_array_equal(shown, pixels)


@pytest.mark.parametrize("side", [224, 300, 100], ids=["own size", "larger", "smaller"])
def test_input_picture_is_pillows_resize_and_a_private_copy(side: int) -> None:
    """At its own size the picture is shown as it is; any other size is Pillow's resize.
    Either way the caller may draw on what it gets without changing a later call's."""
    pixels = photo(224)
    resample = Image.Resampling.NEAREST if side >= 448 else Image.Resampling.BILINEAR
    expected = np.asarray(Image.fromarray(pixels).resize((side, side), resample))
    shown = input_picture(pixels, longer_side=side)
    assert np.array_equal(shown, expected)
    shown[:] = 0
    assert np.array_equal(input_picture(pixels, longer_side=side), expected)
    assert not np.shares_memory(shown, pixels)
