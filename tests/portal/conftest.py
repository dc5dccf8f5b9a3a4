"""Browser fixtures for the portal tests: Debian's Chromium driven by Playwright against a live
server (never a downloaded browser), console errors fail the test, screenshots for review."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.helpers import LiveServer, serving

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "portal"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (REQUIRE_BROWSER=1; `make test` installs Chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def portal_server() -> Iterator[LiveServer]:
    """The default models: digits (trained) and resnet18 (random weights, no cache here)."""
    with serving({"LAYERSCOPE_LOG_LEVEL": "warning"}) as live:
        yield live


@pytest.fixture(scope="module")
def portal_browser() -> Iterator[Any]:
    # Module scope: one sync Playwright per process at a time, so other browser test
    # modules (tests/test_ui_browser.py) can start theirs after these.
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


class Tab:
    """One page in a fresh context, with its console errors."""

    def __init__(self, browser: Any, width: int, height: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.allowed: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(p, e) for p in self.allowed)]


@pytest.fixture
def open_tab(portal_browser: Any) -> Iterator[Any]:
    """`open_tab(width, height)`: a page; every console error it logged fails the test."""
    tabs: list[Tab] = []

    def make(width: int = 1400, height: int = 900) -> Tab:
        tab = Tab(portal_browser, width, height)
        tabs.append(tab)
        return tab

    yield make
    for tab in tabs:
        tab.context.close()
    for tab in tabs:
        assert not tab.unexpected(), f"console errors: {tab.unexpected()}"


# --- helpers: the page's Content-Security-Policy forbids eval, so waiting polls evaluate ---


def wait_for(page: Any, script: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {script}")
        time.sleep(0.05)


def settled(page: Any, figure: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until a result pane shows a decoded picture or an error; what it shows."""
    script = f"""(() => {{
        const figure = document.getElementById({json.dumps(figure)});
        if (!figure || figure.classList.contains("busy")) return null;
        const image = figure.querySelector("img.panel"), error = figure.querySelector(".error");
        const shown = !figure.querySelector(".picture").hidden && image.complete
            && image.naturalWidth > 0;
        if (!shown && error.hidden) return null;
        return {{
            src: shown ? image.src : null, width: image.naturalWidth,
            shownWidth: image.clientWidth, ms: Number(figure.dataset.ms),
            error: error.hidden ? null : error.textContent,
            caption: figure.querySelector("figcaption").textContent,
            tiles: [...figure.querySelectorAll(".tile")].map((t) => t.dataset.channel),
        }};
    }})()"""
    return wait_for(page, script, timeout)


def panel_pixels(page: Any, figure: str) -> np.ndarray:
    """The picture a result pane shows, as the browser decoded it: uint8 RGB [h, w, 3]."""
    url = page.evaluate(
        f"""(() => {{
            const image = document.querySelector("#{figure} img.panel");
            const canvas = document.createElement("canvas");
            canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
            canvas.getContext("2d").drawImage(image, 0, 0);
            return canvas.toDataURL("image/png");
        }})()"""
    )
    data = base64.b64decode(url.partition(",")[2])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def tile_boxes(page: Any, figure: str, size: tuple[int, ...]) -> list[dict[str, Any]]:
    """The clickable tiles of a pane: their data attributes and pixel box (x, y, w, h) in a
    picture of `size` (height, width), from their percentage positions."""
    tiles = page.eval_on_selector_all(
        f"#{figure} .tile",
        """(tiles) => tiles.map((t) => ({
            data: { ...t.dataset },
            box: ["left", "top", "width", "height"].map((k) => parseFloat(t.style[k]) / 100),
        }))""",
    )
    height, width = size[:2]
    for tile in tiles:
        left, top, wide, high = tile.pop("box")
        tile["box"] = (
            round(left * width),
            round(top * height),
            round(wide * width),
            round(high * height),
        )
    return tiles


def open_portal(page: Any, server: LiveServer, hash_: str = "") -> None:
    page.goto(f"{server.url}/ui{hash_}")
    wait_for(
        page,
        "document.body.dataset.ready === 'true'"
        " && document.querySelectorAll('#samples img').length > 0",
    )


def sample_page(open_tab: Any, server: LiveServer, sample: str, hash_: str = "") -> Any:
    """A fresh tab on the portal at `hash_` with the sample picture `sample` chosen."""
    page = open_tab().page
    open_portal(page, server, hash_)
    choose_sample(page, sample)
    return page


def choose_sample(page: Any, name: str) -> None:
    page.click(f"#samples button[data-sample='{name}']")
    wait_for(page, f"location.hash.includes('sample={name}')")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
