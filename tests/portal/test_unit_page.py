"""The unit page in the portal: a feature-map tile opens layer:channel with its feature
visualization, its dataset exemplars with boxes, the unit's Grad-CAM on the current picture,
its contribution to each class over the dataset, and the layer's channels in the current
picture as bars, each of which opens its own unit."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from model_registry.spec import ModelSpec
from service.engine.exemplars.montage import BOX_COLOUR, GAP, montage_size
from service.samples import digit_samples
from tests.helpers import LiveServer, files, png
from tests.portal.conftest import panel_pixels, sample_page, screenshot, settled, wait_for

pytestmark = pytest.mark.browser

DIGITS = ModelSpec(
    name="digits",
    architecture="builtin:digits",
    weights=None,
    input_size=(32, 32),
    mean=(0.5,),
    std=(0.5,),
    num_classes=10,
)


def test_a_tile_opens_the_unit_page(open_tab: Any, portal_server: LiveServer) -> None:
    page = sample_page(open_tab, portal_server, "digit-8-label8.png")
    settled(page, "maps-result")
    page.locator("#maps-result .tile").nth(5).click()  # conv2, channel 5
    wait_for(page, "document.getElementById('unit-page').dataset.unit === 'conv2:5'")
    assert "unit conv2:5" in page.inner_text("#unit-title")

    exemplars = settled(page, "unit-exemplars", timeout=120)
    assert exemplars["error"] is None, exemplars["error"]
    pixels = panel_pixels(page, "unit-exemplars")
    height, width = montage_size(DIGITS, 6)
    assert pixels.shape == (height, width, 3)
    red = (pixels == BOX_COLOUR).all(axis=2)
    tile = 96
    for column in range(6):  # a box drawn on every picture of the top row, none on the crops
        left = GAP + column * (tile + GAP)
        assert red[GAP : GAP + tile, left : left + tile].any()
        assert not red[2 * GAP + tile :, left : left + tile].any()

    visual = settled(page, "unit-visual", timeout=120)
    assert visual["error"] is None and visual["width"] > 0
    drives = settled(page, "unit-drives", timeout=120)
    assert drives["error"] is None and drives["width"] > 0
    bars = wait_for(
        page,
        "(() => { const b = [...document.querySelectorAll('#unit-classes .unit-bar')];"
        " return b.length ? b.map((r) => [r.dataset.label, r.dataset.value]) : null; })()",
        timeout=120,
    )
    assert [label for label, _ in bars] == [str(d) for d in range(10)]
    values = np.array([float(v) for _, v in bars])
    assert np.isfinite(values).all() and np.abs(values).max() > 0

    channels = wait_for(
        page,
        "(() => { const b = [...document.querySelectorAll('#unit-channels .unit-bar')];"
        " return b.length ? b.map((r) => [r.dataset.channel, r.dataset.value]) : null; })()",
        timeout=120,
    )
    picture = digit_samples(9)["digit-8-label8.png"]
    expected = httpx.post(
        f"{portal_server.url}/v1/models/digits/contributions",
        params={"layer": "conv2", "top": 8},
        files=files(png(picture)),
        timeout=60,
    ).json()["channels"]
    assert [int(c) for c, _ in channels] == [c["channel"] for c in expected]
    np.testing.assert_allclose(
        [float(v) for _, v in channels], [c["contribution"] for c in expected], rtol=1e-5
    )
    other = int(channels[1][0])
    page.locator("#unit-channels .unit-bar").nth(1).click()  # a bar opens its own unit
    wait_for(page, f"document.getElementById('unit-page').dataset.unit === 'conv2:{other}'")
    assert f"channel {other} of" in page.inner_text("#enlarge-title")
    path = screenshot(page, "unit-page")
    page.locator("#unit-page").scroll_into_view_if_needed()
    page.locator("#unit-page").screenshot(path=str(path.with_name("unit-page-panels.png")))
