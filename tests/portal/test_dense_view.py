"""The class view of segmentation and detection models: the mask or the boxes, each class or
box a button, and a click explains it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LiveServer, serving
from tests.portal.conftest import choose_sample, open_portal, screenshot, settled, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def dense_server(dense_models_file: Path) -> Iterator[LiveServer]:
    # A detector's passes are slow on a shared CPU: a generous deadline, not a 504.
    env = {"LAYERSCOPE_MODELS": str(dense_models_file), "LAYERSCOPE_REQUEST_TIMEOUT_S": "600"}
    with serving(env) as live:
        yield live


BUTTONS = "document.querySelectorAll('#predictions li button').length"


@pytest.mark.parametrize(
    ("model", "click", "caption"),
    [("det", "#1", "for detection 1"), ("seg", "3", "for class 3 'tree'")],
)
def test_clicking_a_box_or_a_class_explains_it(
    open_tab: Any, dense_server: LiveServer, model: str, click: str, caption: str
) -> None:
    page = open_tab().page
    open_portal(page, dense_server, f"#model={model}&view=classes")
    choose_sample(page, "china.jpg")
    wait_for(page, f"{BUTTONS} > 1", timeout=240)
    picture = wait_for(
        page,
        "(() => { const img = document.querySelector('#predictions + figure img.panel');"
        " return img && img.complete && img.naturalWidth; })()",
    )
    assert picture >= 256  # the server's mask with legend, or boxes, at least 256 px wide
    page.click(f"#predictions button[data-class='{click}']")
    wait_for(
        page,
        f"document.querySelector(\"#predictions button[data-class='{click}']\")"
        ".getAttribute('aria-pressed') === 'true'",
    )
    cam = settled(page, "cam-result", timeout=180)
    assert cam["error"] is None, cam
    assert caption in cam["caption"]
    gradients = settled(page, "grad-result", timeout=180)
    assert gradients["error"] is None, gradients
    screenshot(page, f"10-{model}-explained")
