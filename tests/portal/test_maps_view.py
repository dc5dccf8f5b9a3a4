"""Feature maps in the portal: vectors as bar charts, sharp panels, colorbars, values on hover."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import LiveServer
from tests.portal.conftest import (
    choose_sample,
    open_portal,
    panel_pixels,
    sample_page,
    screenshot,
    settled,
    tile_boxes,
    wait_for,
)

pytestmark = pytest.mark.browser


def test_a_vector_layer_is_a_sorted_bar_chart_with_class_names(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = sample_page(open_tab, portal_server, "digit-3-label3.png")
    settled(page, "maps-result")
    page.click("#layer-tree [data-layer='fc']")
    wait_for(page, "document.querySelectorAll('#maps-result svg.barchart .bar-row').length")
    bars = page.eval_on_selector_all(
        "#maps-result svg.barchart .bar-row",
        "(rows) => rows.map((r) => [Number(r.dataset.index), Number(r.dataset.value),"
        " r.querySelector('.bar-name').textContent])",
    )
    assert len(bars) == 10
    values = [value for _, value, _ in bars]
    assert values == sorted(values, reverse=True)
    assert bars[0][2] == "class 3"  # the digit model's top logit for a 3, named by its class
    assert not page.is_visible("#maps-result .picture")
    assert "a vector of 10 values" in page.inner_text("#maps-result figcaption")
    screenshot(page, "01-vector-bar-chart")


def test_map_panels_are_shown_at_their_own_size_with_values_on_hover(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = sample_page(open_tab, portal_server, "digit-8-label8.png")
    shown = settled(page, "maps-result")
    assert shown["shownWidth"] == shown["width"]  # no browser scaling of the panel's text
    wait_for(page, "document.getElementById('maps-result').dataset.values === '16'")
    # a colorbar under the grid; no channel badge over any tile (the picture has no black
    # label boxes: the page names each tile on hover)
    assert page.inner_text("#maps-result .colorbar").split()[:2] == ["conv2", "tile"]
    pixels = panel_pixels(page, "maps-result")
    x, y, _, _ = tile_boxes(page, "maps-result", pixels.shape)[0]["box"]
    corner = pixels[y : y + 8, x : x + 8].astype(int)
    assert (corner.sum(axis=2) > 0).all()  # viridis has no black: black would be a badge
    tile = page.locator("#maps-result .tile").nth(5)
    box = tile.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] - 2)
    readout = wait_for(page, "document.querySelector('#maps-result .readout').textContent")
    assert readout.startswith("conv2 · channel 5 · x 0, y ")
    tile.click()
    enlarged = settled(page, "enlarge-result")
    assert enlarged["shownWidth"] == enlarged["width"] and enlarged["width"] >= 8 * 16
    wait_for(page, "document.querySelectorAll('#enlarge-result .colorbar .tick').length >= 2")
    picture = page.locator("#enlarge-result img.panel").bounding_box()
    page.mouse.move(picture["x"] + 3, picture["y"] + 3)
    value = wait_for(page, "document.querySelector('#enlarge-result .readout').textContent")
    assert value.startswith("x 0, y 0: ")
    screenshot(page, "02-enlarged-with-colorbar")


def test_a_rejected_upload_clears_every_view(
    open_tab: Any, portal_server: LiveServer, tmp_path: Any
) -> None:
    tab = open_tab()
    tab.allowed.append(r"status of 4\d\d")
    page = tab.page
    open_portal(page, portal_server)
    choose_sample(page, "digit-1-label1.png")
    assert settled(page, "maps-result")["error"] is None
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all")
    page.set_input_files("#file", str(text))
    wait_for(page, "!document.getElementById('banner').hidden")
    wait_for(page, "!location.hash.includes('image=')")
    assert not page.is_visible("#maps-result .picture")
    assert "Choose an image" in page.inner_text("#maps-result .message")
    page.click("#tab-classes")
    assert page.eval_on_selector_all("#predictions button", "(b) => b.length") == 0
    assert not page.is_visible("#cam-result .picture")
    assert "not accepted" in page.inner_text("#image-info")


def test_compare_chips_follow_the_forward_order(open_tab: Any, portal_server: LiveServer) -> None:
    page = sample_page(
        open_tab,
        portal_server,
        "digit-0-label0.png",
        "#view=compare&compare=relu3,conv1,pool2&channels=first:4",
    )
    settled(page, "compare-result")
    chips = page.eval_on_selector_all("#compare-list .chip", "(c) => c.map((x) => x.dataset.layer)")
    assert chips == ["conv1", "pool2", "relu3"]
    titles = page.eval_on_selector_all("#compare-list .chip", "(c) => c.map((x) => x.title)")
    assert titles[0].startswith("conv1")
    screenshot(page, "10-compare-forward-order")


def test_a_mean_map_reads_its_values_and_enlarges_with_a_colorbar(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = sample_page(open_tab, portal_server, "digit-9-label9.png", "#reduce=mean&layer=relu2")
    settled(page, "maps-result")
    wait_for(page, "document.getElementById('maps-result').dataset.values === '1'")
    box = page.locator("#maps-result .tile").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2)
    readout = wait_for(page, "document.querySelector('#maps-result .readout').textContent")
    assert readout.startswith("relu2 · mean of 16 channels · x 15, y 15: ")
    assert float(readout.rsplit(": ", 1)[1]) >= 0  # a mean of ReLU outputs
    page.locator("#maps-result .tile").first.click()
    settled(page, "enlarge-result")
    wait_for(page, "document.querySelectorAll('#enlarge-result .colorbar').length === 1")
    assert page.inner_text("#enlarge-title") == "relu2 · mean of first:16"
