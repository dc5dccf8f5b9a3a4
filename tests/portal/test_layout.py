"""The page at 900 px: no sideways scroll on any tab; options that do nothing are disabled."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import LiveServer
from tests.portal.conftest import (
    choose_sample,
    open_portal,
    sample_page,
    screenshot,
    settled,
    wait_for,
)

pytestmark = pytest.mark.browser

NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
# nor inside a view: every result pane shown fits its width
CLIPPED_PANES = """[...document.querySelectorAll("main .result")]
    .filter((f) => f.offsetParent && f.scrollWidth > f.clientWidth + 1).map((f) => f.id)"""


def test_no_tab_scrolls_sideways_at_900_px(open_tab: Any, portal_server: LiveServer) -> None:
    tab = open_tab(900, 800)
    # the trust view asks every listed method; those that do not apply to the digits CNN
    # (ViT-only ones) answer 422, shown in their row and logged by the browser
    tab.allowed.append("status of 422")
    page = tab.page
    open_portal(page, portal_server, "#tsteps=4&trand=1")
    choose_sample(page, "digit-6-label6.png")
    settled(page, "maps-result")
    tabs = page.eval_on_selector_all("#tabs button", "(tabs) => tabs.map((t) => t.dataset.view)")
    assert len(tabs) >= 8
    for view in tabs:
        page.click(f"#tab-{view}")
        page.wait_for_timeout(300)
        if view in ("maps", "compare", "classes"):
            settled(
                page, {"maps": "maps-result", "compare": "compare-result"}.get(view, "cam-result")
            )
        if view == "embedding":
            wait_for(page, "document.querySelectorAll('#embedding-result svg .point').length")
        if view == "trust":
            wait_for(page, "document.getElementById('trust-result').dataset.methods", 600)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{view} scrolls sideways: {width} px"
        assert page.evaluate(CLIPPED_PANES) == [], view
        screenshot(page, f"06-narrow-{view}")


def test_pca_takes_every_channel_and_disables_what_it_ignores(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = sample_page(open_tab, portal_server, "digit-4-label4.png")
    first = settled(page, "maps-result")
    page.select_option("#reduce", "pca")
    wait_for(page, "location.hash.includes('channels=all')")
    shown = settled(page, "maps-result")
    assert shown["src"] != first["src"] and "pca of channels 0, 1, 2" in shown["caption"]
    assert page.is_disabled("#colormap") and page.is_disabled("#scale")
    assert "no colormap applies" in page.get_attribute("label:has(#colormap)", "title")
    page.select_option("#reduce", "mean")
    wait_for(page, "!document.getElementById('colormap').disabled")
    assert page.is_disabled("#scale")
    page.click("#layer-tree [data-layer='fc']")
    wait_for(page, "document.getElementById('reduce').disabled")
    assert "vector" in page.get_attribute("label:has(#channels-mode)", "title")
