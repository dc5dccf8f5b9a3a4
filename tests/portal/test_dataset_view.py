"""The Dataset tab: the analysis job over the digits set, the scatter coloured by true or
predicted class, a click that opens a dataset picture in every tab, the mistakes grid, the
confusion heatmap and the per-layer dead units."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import LiveServer
from tests.portal.conftest import open_portal, screenshot, settled, wait_for

pytestmark = pytest.mark.browser

POINTS = "#dataset-result svg.dataset-scatter circle.point"


def _fills(page: Any) -> list[str]:
    return page.eval_on_selector_all(POINTS, "(dots) => dots.map((d) => d.getAttribute('fill'))")


def test_the_dataset_tab_analyses_digits_and_opens_a_picture_everywhere(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = open_tab(1400, 1000).page
    open_portal(page, portal_server, "#view=dataset&model=digits&dmethod=pca")
    wait_for(page, "document.querySelectorAll('#dataset-name option').length >= 1")
    assert page.input_value("#dataset-name") == "digits"
    page.click("#dataset-run")
    wait_for(page, f"document.querySelectorAll('{POINTS}').length === 1797", timeout=300)
    summary = page.inner_text("#dataset-result .dataset-summary")
    assert "digits on digits: 1797 pictures" in summary and "accuracy" in summary
    # Ten classes in ten colours; the confusion matrix is 10 x 10 and adds up to 1797.
    by_label = _fills(page)
    assert len(set(by_label)) == 10
    cells = page.eval_on_selector_all(
        "#dataset-result table.confusion tbody td", "(c) => c.map((x) => Number(x.textContent))"
    )
    assert len(cells) == 100 and sum(cells) == 1797
    # Dead units per layer, with a histogram each; "–" where dead means nothing.
    dead = dict(
        page.eval_on_selector_all(
            "#dataset-result table.dataset-layers tbody tr",
            "(rows) => rows.map((r) => [r.dataset.layer, r.children[3].textContent])",
        )
    )
    assert dead["conv1"] == "–" and dead["relu1"].endswith("%)")
    histograms = page.eval_on_selector_all(
        "#dataset-result table.dataset-layers svg.histogram", "(s) => s.length"
    )
    assert histograms == len(dead) == 13
    # Colour by predicted: the colours change only where a mistake is.
    mistakes = page.eval_on_selector_all("#dataset-result .mistake", "(m) => m.length")
    page.select_option("#dataset-colour", "predicted")
    wait_for(page, "location.hash.includes('dcolour=predicted')")
    changed = sum(a != b for a, b in zip(by_label, _fills(page), strict=True))
    assert mistakes >= 1 and changed == mistakes
    screenshot(page, "12-dataset-tab")
    # A click on a point opens that picture, by reference, in the other tabs.
    index = page.get_attribute(f"{POINTS}:nth-of-type(5)", "data-index")
    # the point itself, even where a neighbour of the scatter overlaps it
    page.locator(f"{POINTS}[data-index='{index}']").dispatch_event("click")
    wait_for(page, f"decodeURIComponent(location.hash).includes('image=dataset:digits/{index}')")
    wait_for(page, "document.getElementById('preview').naturalWidth === 32")
    page.click("#tab-maps")
    shown = settled(page, "maps-result")
    assert shown["error"] is None and shown["src"]
    page.click("#tab-classes")
    wait_for(page, "document.querySelectorAll('#predictions li').length > 0")
    # A mistake opens the same way (the tab keeps its result).
    page.click("#tab-dataset")
    first = page.get_attribute("#dataset-result .mistake", "data-index")
    page.click(f"#dataset-result .mistake[data-index='{first}']")
    wait_for(page, f"decodeURIComponent(location.hash).includes('image=dataset:digits/{first}')")
