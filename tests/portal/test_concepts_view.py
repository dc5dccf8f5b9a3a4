"""The Concepts tab: the DFF overlay of the current picture at the selected layer, a row of
top classes per concept, and the reason when the layer cannot reach the classifier."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import LiveServer
from tests.portal.conftest import sample_page, screenshot, settled, wait_for

pytestmark = pytest.mark.browser

ROWS = "#concepts-result tr[data-concept]"


def test_the_concepts_tab_draws_the_overlay_and_each_concepts_classes(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = sample_page(
        open_tab,
        portal_server,
        "digit-3-label3.png",
        "#view=concepts&model=digits&layer=relu3&ck=3",
    )
    wait_for(page, f"document.querySelectorAll('{ROWS}').length === 3")
    shown = settled(page, "concepts-result")
    assert shown["error"] is None and shown["width"] > 0
    cells = page.eval_on_selector_all(
        f"{ROWS} td:nth-child(2)", "(c) => c.map((x) => x.textContent)"
    )
    assert all(len(cell.split(", ")) == 3 for cell in cells), cells
    assert "3 concepts of relu3" in page.inner_text("#concepts-result figcaption")
    screenshot(page, "13-concepts")
    # More concepts from the control; an inner layer says why it has no classes.
    page.fill("#concepts-k", "5")
    page.dispatch_event("#concepts-k", "change")
    wait_for(page, f"document.querySelectorAll('{ROWS}').length === 5")
    page.evaluate("location.hash = location.hash.replace('layer=relu3', 'layer=relu2')")
    wait_for(page, "document.querySelector('#concepts-result .concepts-note') !== null")
    assert "64 channels" in page.inner_text("#concepts-result .concepts-note")
