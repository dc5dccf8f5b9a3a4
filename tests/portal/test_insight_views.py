"""Statistics (sortable, histograms, dead channels only where they mean something), filters
and the embedding in the portal."""

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
    wait_for,
)

pytestmark = pytest.mark.browser

ROWS = "#stats-result tbody tr[data-layer]"


def _column(page: Any, index: int) -> list[str]:
    return page.eval_on_selector_all(
        ROWS, f"(rows) => rows.map((r) => r.children[{index}].textContent.trim())"
    )


def test_statistics_sort_show_histograms_and_dead_channels_only_after_relu(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = sample_page(open_tab, portal_server, "digit-7-label7.png", "#view=stats")
    wait_for(page, f"document.querySelectorAll('{ROWS}').length === 13")
    names = _column(page, 1)
    dead = dict(zip(names, _column(page, 7), strict=True))
    assert dead["conv1"] == "–" and dead["fc"] == "–" and dead["bn2"] == "–"
    assert dead["relu1"].endswith("%") and dead["pool1"].endswith("%")
    assert page.eval_on_selector_all(f"{ROWS} svg.histogram", "(s) => s.length") == 13
    assert page.is_visible("#stats-result .histogram-detail svg.histogram.big")
    page.click("#stats-result th[data-column='max']")
    maxima = [float(v) for v in _column(page, 5)]
    assert maxima == sorted(maxima, reverse=True)
    page.click("#stats-result th[data-column='max']")
    assert [float(v) for v in _column(page, 5)] == sorted(maxima)
    screenshot(page, "07-statistics-sorted-histograms")


def test_filters_are_captioned_by_their_view_and_no_badge_covers_a_weight(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = open_tab().page
    open_portal(page, portal_server, "#view=filters&model=resnet18&layer=conv1&fchannels=first:16")
    page.click("#samples button[data-sample='china.jpg']")
    shown = settled(page, "filters-result")
    assert shown["error"] is None
    assert "red, green and blue inputs" in shown["caption"] and "positive" not in shown["caption"]
    assert page.eval_on_selector_all("#filters-result .tile[data-filter]", "(t) => t.length") == 16
    # the first kernel's top-left weight is drawn, not covered by a black number badge
    corner = panel_pixels(page, "filters-result")[30, 10]
    assert corner.tolist() != [0, 0, 0]
    tile = page.locator("#filters-result .tile[data-filter='5']").bounding_box()
    page.mouse.move(tile["x"] + 1, tile["y"] + 1)
    readout = wait_for(page, "document.querySelector('#filters-result .readout').textContent")
    assert readout.startswith("filter 5 · kernel x 0, y 0: R ")
    page.select_option("#filter-view", "mean")
    wait_for(page, "document.querySelectorAll('#filters-result .colorbar').length === 1")
    assert "centred on 0" in page.inner_text("#filters-result figcaption")
    screenshot(page, "08-filters-mean-colorbar")


def test_the_embedding_colours_classes_and_keeps_labels_inside(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = open_tab(900, 900).page
    open_portal(page, portal_server, "#view=embedding")
    choose_sample(page, "digit-3-label3.png")
    wait_for(page, "document.querySelectorAll('#embedding-result svg .point').length === 52")
    fills = page.eval_on_selector_all(
        "#embedding-result .point.reference",
        "(points) => points.map((p) => [p.dataset.label, p.querySelector('circle')"
        ".getAttribute('fill')])",
    )
    by_class: dict[str, set[str]] = {}
    for label, fill in fills:
        by_class.setdefault(label, set()).add(fill)
    assert len(by_class) == 10 and all(len(f) == 1 for f in by_class.values())  # one colour each
    assert len({next(iter(f)) for f in by_class.values()}) == 10  # ten different colours
    counts = {label: sum(1 for lab, _ in fills if lab == label) for label in by_class}
    assert min(counts.values()) >= 2  # several reference points per class
    inside = page.evaluate(
        """(() => {
            const svg = document.querySelector("#embedding-result svg").getBoundingClientRect();
            const label = document.querySelector("#embedding-result .mine-label")
                .getBoundingClientRect();
            return label.left >= svg.left && label.right <= svg.right
                && label.top >= svg.top && label.bottom <= svg.bottom;
        })()"""
    )
    assert inside
    size = page.evaluate(
        "document.querySelector('#embedding-result .sample image').getBoundingClientRect().width"
    )
    assert size >= 30  # thumbnails one can read
    screenshot(page, "09-embedding-by-class")
