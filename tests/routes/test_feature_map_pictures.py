"""Rendered feature maps over HTTP: a vector layer is a sorted bar chart, a map has a colorbar."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from service.engine.charts import _POSITIVE, BAR_CHART_WIDTH, BAR_HEIGHT, COLORBAR_HEIGHT
from tests.helpers import files, load_npy

URL = "/v1/models/tiny-resnet/feature-maps"


def test_a_linear_output_is_a_bar_chart_of_its_sorted_values(
    tiny_client: TestClient, tiny_inputs: list[bytes]
) -> None:
    picture = tiny_client.post(f"{URL}?layers=fc&channels=all", files=files(tiny_inputs[0]))
    one = files(tiny_inputs[0])
    arrays = tiny_client.post(f"{URL}?layers=fc&channels=all&format=npy", files=one)
    values = load_npy(arrays.content)[0, :, 0, 0]
    image = np.asarray(Image.open(io.BytesIO(picture.content)).convert("RGB"))
    chart_height = len(values) * BAR_HEIGHT + 20
    side = max(128, chart_height)
    assert image.shape[:2] == (8 + 18 + side + 8, 8 + side + 8 + BAR_CHART_WIDTH + 8)
    chart = image[8 + 18 :, 8 + side + 8 : 8 + side + 8 + BAR_CHART_WIDTH]
    # the positive bars, row by row, are as long as their values and sorted largest first
    ordered = np.sort(values)[::-1]
    lengths = [
        int((chart[row * BAR_HEIGHT + 2 + BAR_HEIGHT // 2] == _POSITIVE).all(axis=1).sum())
        for row in range(len(values))
    ]
    positive = ordered > 0
    assert positive.any()
    shown = np.array(lengths)[positive]
    assert (np.diff(shown) <= 1).all() and shown[0] > 0
    ratio = shown / shown[0]
    assert np.allclose(ratio, ordered[positive] / ordered[0], atol=0.05)


def test_a_map_grid_has_a_colorbar_beneath(
    tiny_client: TestClient, tiny_inputs: list[bytes]
) -> None:
    url = f"{URL}?layers=layer1&channels=first:4&upsample=32&scale=shared"
    with_bar = Image.open(io.BytesIO(tiny_client.post(url, files=files(tiny_inputs[0])).content))
    plain = Image.open(
        io.BytesIO(tiny_client.post(f"{url}&labels=false", files=files(tiny_inputs[0])).content)
    )
    assert with_bar.size[0] == plain.size[0]
    grid_height = 2 * 32 + 2
    assert plain.size[1] == 8 + 18 + 128 + 8
    pixels = np.asarray(with_bar.convert("RGB"))
    strip = pixels[8 + 18 + grid_height + 4 + 2, -8 - (2 * 32 + 2) : -8]
    assert len(np.unique(strip, axis=0)) > 30  # the colormap runs along the bar
    assert COLORBAR_HEIGHT > 10
