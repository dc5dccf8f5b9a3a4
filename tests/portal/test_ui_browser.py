"""The portal in a real browser: Debian's Chromium driven by Playwright against a live server.

Each test opens /ui in a fresh browser context and fails on any console error it did not
expect. One screenshot per major view goes to test-output/screenshots/ (a CI artifact).
Without Chromium these tests skip, unless REQUIRE_BROWSER=1 (as `make test` sets it).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.samples import photos
from tests.helpers import LiveServer, digits_entry, serving
from tests.portal.conftest import panel_pixels, settled, tile_boxes, wait_for

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
TIMINGS = ROOT / "test-output" / "ui-click-seconds.json"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with serving({"LAYERSCOPE_LOG_LEVEL": "warning"}) as live:
        yield live


DIGITS_ONLY = digits_entry([str(digit) for digit in range(10)])
KEY = "portal-test-key"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The digit model behind an API key, keeping a single stored image."""
    config = tmp_path_factory.mktemp("guarded") / "models.toml"
    config.write_text(DIGITS_ONLY)
    env = {
        "LAYERSCOPE_LOG_LEVEL": "warning",
        "LAYERSCOPE_MODELS": str(config),
        "LAYERSCOPE_API_KEY": KEY,
        "LAYERSCOPE_IMAGE_STORE_MAX_IMAGES": "1",
    }
    with serving(env) as live:
        yield live


@pytest.fixture(scope="module")
def browser(portal_browser: Any) -> Any:
    """The Chromium of tests/portal/conftest.py (it fails or skips when Chromium is missing)."""
    return portal_browser


class Console:
    """Console errors and uncaught exceptions of one page; `allow` expected ones by pattern."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[str] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(pattern)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(p, e) for p in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.on(
        "console", lambda message: message.type == "error" and console.errors.append(message.text)
    )
    tab.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    yield tab
    context.close()
    assert not console.unexpected(), f"console errors: {console.unexpected()}"


@pytest.fixture(scope="module")
def china_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's china photo written as a PNG file, as a user would pick it."""
    path = tmp_path_factory.mktemp("pictures") / "china.png"
    photos()["china.jpg"].save(path)
    return path


# --- helpers (wait_for and settled: tests/portal/conftest.py) ----------------------------------


def changed(page: Any, figure: str, before: str | None) -> dict[str, Any]:
    """Wait until the pane settles on a picture other than `before`."""
    deadline = time.monotonic() + 30
    while True:
        shown = settled(page, figure)
        if shown["src"] != before or shown["error"]:
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"{figure} did not change")
        time.sleep(0.03)


def open_portal(page: Any, server: LiveServer, hash_: str = "") -> None:
    page.goto(f"{server.url}/ui{hash_}")
    wait_for(
        page,
        "document.body.dataset.ready === 'true'"
        " && document.querySelectorAll('#samples img').length === 12",
    )


def current_state(page: Any) -> dict[str, str]:
    # page.url can lag behind history.replaceState; ask the page itself.
    fragment = page.evaluate("location.hash").lstrip("#")
    return dict(part.split("=", 1) for part in fragment.split("&") if part)


def choose_sample(page: Any, name: str, figure: str = "maps-result") -> dict[str, Any]:
    page.click(f"#samples button[data-sample='{name}']")
    wait_for(page, f"location.hash.includes('sample={name}')")
    return settled(page, figure)


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# --- tests ----------------------------------------------------------------------------------


def stored_id(server: LiveServer, picture: Path) -> str:
    """The id POST /v1/images gives `picture` (an HMAC the server keys, not its SHA-256)."""
    upload = {"image": ("p.png", picture.read_bytes(), "image/png")}
    image_id = httpx.post(f"{server.url}/v1/images", files=upload).json()["image_id"]
    assert image_id != hashlib.sha256(picture.read_bytes()).hexdigest()
    return image_id


def test_a_photo_from_the_file_picker_shows_feature_maps_at_once(
    page: Any, server: LiveServer, china_png: Path
) -> None:
    open_portal(page, server)
    assert page.is_visible("#maps-result .message")  # a hint, not a blank pane
    page.select_option("#model", "resnet18")
    page.set_input_files("#file", str(china_png))
    shown = settled(page, "maps-result")
    assert shown["error"] is None and shown["width"] > 0
    state = current_state(page)
    assert state["image"] == stored_id(server, china_png)
    assert state["model"] == "resnet18" and shown["caption"].startswith(state["layer"])
    assert len(shown["tiles"]) == 16 and shown["tiles"][:3] == ["0", "1", "2"]
    assert "china.png" in page.inner_text("#image-info")
    screenshot(page, "01-feature-maps-photo")


def test_a_dropped_picture_is_uploaded_like_a_chosen_one(
    page: Any, server: LiveServer, china_png: Path
) -> None:
    open_portal(page, server)
    transfer = page.evaluate_handle(
        """(encoded) => {
            const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            return transfer;
        }""",
        base64.b64encode(china_png.read_bytes()).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    shown = settled(page, "maps-result")
    assert shown["width"] > 0 and "dropped.png" in page.inner_text("#image-info")
    assert current_state(page)["image"] == stored_id(server, china_png)


def test_layer_and_channel_choices_redraw_the_maps(page: Any, server: LiveServer) -> None:
    open_portal(page, server)
    first = choose_sample(page, "digit-3-label3.png")
    assert current_state(page)["model"] == "digits"  # a digit picks the digit model
    page.click("#layer-tree [data-layer='conv3']")
    by_layer = changed(page, "maps-result", first["src"])
    assert by_layer["caption"].startswith("conv3 [128×8×8]")

    page.select_option("#channels-mode", "top")
    page.fill("#channels-n", "4")
    page.press("#channels-n", "Enter")
    top = changed(page, "maps-result", by_layer["src"])
    assert len(top["tiles"]) == 4 and current_state(page)["channels"] == "top%3A4"

    page.select_option("#channels-mode", "list")
    page.fill("#channels-list", "0,5,7")
    page.press("#channels-list", "Enter")
    listed = changed(page, "maps-result", top["src"])
    assert listed["tiles"] == ["0", "5", "7"]

    page.select_option("#reduce", "pca")
    reduced = changed(page, "maps-result", listed["src"])
    assert reduced["tiles"] == [""] and "pca of channels 0, 5, 7" in reduced["caption"]
    assert page.is_disabled("#colormap")  # PCA is RGB: the colormap does not apply
    page.select_option("#reduce", "mean")
    meaned = changed(page, "maps-result", reduced["src"])
    assert "mean of channels" in meaned["caption"]
    screenshot(page, "02-layer-and-channels")

    page.focus("#layer-tree")
    page.keyboard.press("ArrowDown")
    assert changed(page, "maps-result", meaned["src"])["caption"].startswith("bn3")
    page.fill("#layer-search", "relu")
    rows = page.eval_on_selector_all(
        "#layer-tree [data-layer]", "(rows) => rows.map((r) => r.dataset.layer)"
    )
    assert rows == ["relu1", "relu2", "relu3"]


def test_a_click_on_a_tile_enlarges_that_channel_with_its_range(
    page: Any, server: LiveServer
) -> None:
    open_portal(page, server)
    choose_sample(page, "digit-8-label8.png")
    tile = page.locator("#maps-result .tile").nth(5)
    low, high = re.search(r"min (\S+) · max (\S+)", tile.get_attribute("title")).groups()
    tile.click()
    enlarged = settled(page, "enlarge-result")
    assert page.is_visible("#enlarge") and enlarged["width"] > 0
    assert page.inner_text("#enlarge-title") == "conv2 · channel 5 of 64"
    assert f"values from {low} to {high}" in enlarged["caption"]
    screenshot(page, "03-enlarged-channel")
    page.keyboard.press("ArrowRight")
    wait_for(page, "document.getElementById('enlarge-title').textContent.includes('channel 6 of')")
    assert changed(page, "enlarge-result", enlarged["src"])["width"] > 0
    page.keyboard.press("Escape")
    assert not page.is_visible("#enlarge")


def test_compare_shows_several_layers_from_one_call(page: Any, server: LiveServer) -> None:
    open_portal(page, server)
    choose_sample(page, "digit-5-label5.png")
    page.click("#tab-compare")
    shown = settled(page, "compare-result")
    assert [part.split(" ")[0] for part in shown["caption"].split(" · ")] == [
        "conv1",
        "conv2",
        "conv3",
    ]
    assert len(shown["tiles"]) == 48
    screenshot(page, "04-compare-layers")
    page.uncheck("#layer-tree [data-layer='conv2'] .compare-tick")
    fewer = changed(page, "compare-result", shown["src"])
    assert [part.split(" ")[0] for part in fewer["caption"].split(" · ")] == ["conv1", "conv3"]
    assert current_state(page)["compare"] == "conv1%2Cconv3"


def test_tiles_are_found_where_the_server_drew_them(page: Any, server: LiveServer) -> None:
    """Every clickable box covers a coloured tile bordered by the white gap or margin."""
    open_portal(page, server, "#view=compare&compare=conv1,pool2,relu3&channels=first:6")
    choose_sample(page, "digit-2-label2.png", "compare-result")
    pixels = panel_pixels(page, "compare-result")
    white = (pixels == 255).all(axis=2)
    tiles = tile_boxes(page, "compare-result", pixels.shape)
    misses = []
    for tile in tiles:
        x, y, w, h = tile["box"]
        middle = y + h // 2
        inside = [white[middle, at] for at in (x, x + w // 2, x + w - 1)]
        outside = [white[middle, at] for at in (x - 1, x + w)]
        if any(inside) or not all(outside):
            misses.append(f"{tile['data']['layer']}:{tile['data']['channel']}")
    assert (misses, len(tiles)) == ([], 18)


def test_the_class_view_lists_top_predictions_and_picks_a_target(
    page: Any, server: LiveServer
) -> None:
    open_portal(page, server)
    choose_sample(page, "digit-3-label3.png")
    page.click("#tab-classes")
    wait_for(page, "document.querySelectorAll('#predictions button.class').length === 5")
    labels = page.eval_on_selector_all(
        "#predictions .label", "(items) => items.map((i) => i.textContent)"
    )
    assert labels[0] == "3"
    assert page.get_attribute("#predictions button.class >> nth=0", "aria-pressed") == "true"
    second = page.get_attribute("#predictions button.class >> nth=1", "data-class")
    page.click("#predictions button.class >> nth=1")
    wait_for(
        page,
        f"document.querySelector('#predictions [data-class=\"{second}\"]').ariaPressed === 'true'",
    )
    assert current_state(page)["target"] == second
    screenshot(page, "05-classes")


def test_the_class_view_shows_a_cam_overlay(page: Any, server: LiveServer) -> None:
    open_portal(page, server)
    choose_sample(page, "digit-3-label3.png")
    page.click("#tab-classes")
    shown = settled(page, "cam-result")
    assert shown["error"] is None and shown["width"] > 0 and "gradcam" in shown["caption"]
    page.select_option("#cam-method", "gradcam++")
    again = changed(page, "cam-result", shown["src"])
    assert again["error"] is None and "gradcam++" in again["caption"]
    gradients = settled(page, "grad-result")
    assert gradients["error"] is None and gradients["width"] > 0
    screenshot(page, "06-cam-overlay")


def test_the_url_restores_a_shared_view(page: Any, server: LiveServer, browser: Any) -> None:
    open_portal(page, server)
    choose_sample(page, "digit-8-label8.png")
    page.click("#layer-tree [data-layer='relu2']")
    page.select_option("#channels-mode", "last")
    page.fill("#channels-n", "6")
    page.press("#channels-n", "Enter")
    page.select_option("#colormap", "magma")
    page.select_option("#scale", "shared")
    wait_for(page, "location.hash.includes('scale=shared')")
    shown = settled(page, "maps-result")
    link = page.evaluate("location.href")

    page.reload()
    wait_for(page, "document.body.dataset.ready === 'true'")
    assert settled(page, "maps-result")["src"] == shown["src"]

    other = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        fresh = other.new_page()
        fresh.goto(link)
        restored = settled(fresh, "maps-result")
        assert restored["src"] == shown["src"] and restored["caption"] == shown["caption"]
        assert restored["tiles"] == [str(c) for c in range(58, 64)]
        assert (
            fresh.input_value("#channels-mode") == "last"
            and fresh.input_value("#channels-n") == "6"
        )
        assert fresh.input_value("#colormap") == "magma" and fresh.input_value("#scale") == "shared"
        assert fresh.get_attribute("#layer-tree .selected", "data-layer") == "relu2"
    finally:
        other.close()


def test_api_errors_read_as_sentences(page: Any, server: LiveServer, console: Console) -> None:
    console.allow(r"status of 422")
    open_portal(page, server)
    choose_sample(page, "digit-1-label1.png")
    page.select_option("#channels-mode", "list")
    page.fill("#channels-list", "0,99")
    page.press("#channels-list", "Enter")
    shown = settled(page, "maps-result")
    assert shown["error"].startswith("channels: channel 99 is out of range for layer 'conv2'")
    assert "valid: 0-63" in shown["error"] and not page.is_visible("#maps-result .picture")
    screenshot(page, "07-error")
    page.fill("#channels-list", "0-3")
    page.press("#channels-list", "Enter")
    fixed = settled(page, "maps-result")
    wait_for(page, "document.querySelector('#maps-result .error').hidden")
    assert fixed["width"] > 0


def test_a_link_to_a_forgotten_image_says_so(
    page: Any, server: LiveServer, console: Console
) -> None:
    console.allow(r"status of 404")
    open_portal(page, server, "#model=digits&image=" + "0" * 64)
    shown = settled(page, "maps-result")
    assert "is unknown or was evicted; upload it again" in shown["error"]


def test_every_click_on_the_digit_model_redraws_its_view(page: Any, server: LiveServer) -> None:
    """Each click on a layer or colormap brings a new picture of that layer. How long each
    took goes to test-output/ui-click-seconds.json (a CI artifact, not a pass condition)."""
    open_portal(page, server)
    seconds = []
    started = time.perf_counter()
    shown = choose_sample(page, "digit-4-label4.png")  # the first view needs no further click
    seconds.append(time.perf_counter() - started)
    for layer in ["conv1", "relu1", "pool1", "conv3", "relu3"]:
        started = time.perf_counter()
        page.click(f"#layer-tree [data-layer='{layer}']")
        shown = changed(page, "maps-result", shown["src"])
        seconds.append(time.perf_counter() - started)
        assert shown["caption"].startswith(layer)
    for colormap in ["gray", "turbo"]:
        started = time.perf_counter()
        page.select_option("#colormap", colormap)
        shown = changed(page, "maps-result", shown["src"])
        seconds.append(time.perf_counter() - started)
    assert len(seconds) == 8
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(json.dumps({"seconds": seconds}, indent=1), encoding="utf-8")


def test_statistics_and_filters_views(page: Any, server: LiveServer) -> None:
    open_portal(page, server)
    choose_sample(page, "digit-7-label7.png")
    page.click("#tab-stats")
    wait_for(page, "document.querySelectorAll('#stats-result tr[data-layer]').length > 5")
    assert page.get_attribute("#stats-result tr.selected", "data-layer") == "conv2"
    screenshot(page, "08-statistics")
    page.click("#tab-filters")
    shown = settled(page, "filters-result")
    assert shown["error"] is None and shown["width"] > 0
    screenshot(page, "09-filters")


def test_synthesis_jobs_show_progress_then_their_picture(page: Any, server: LiveServer) -> None:
    open_portal(page, server, "#model=digits&steps=48&unit=3")
    choose_sample(page, "digit-9-label9.png")
    page.click("#tab-synthesis")
    page.click("#maximize-run")
    wait_for(page, "document.getElementById('job-text').textContent.length > 0")
    shown = settled(page, "synthesis-result", timeout=120)
    assert shown["error"] is None and shown["width"] > 0
    assert shown["caption"].startswith("maximize channel 3 of conv2, 48 steps")
    assert page.evaluate("document.getElementById('job-progress').value") == 1
    assert page.inner_text("#job-text") == "succeeded: step 48 of 48"
    screenshot(page, "10-maximize-job")
    page.click("#invert-run")
    inverted = changed(page, "synthesis-result", shown["src"])
    assert inverted["error"] is None and inverted["caption"].startswith("invert conv2's features")


def test_the_page_asks_for_the_api_key_and_recovers_a_forgotten_image(
    page: Any, guarded: LiveServer, console: Console
) -> None:
    console.allow(r"status of 401")
    console.allow(r"status of 404")
    page.goto(f"{guarded.url}/ui")
    wait_for(page, "!document.getElementById('banner').hidden")
    assert "missing or wrong API key" in page.inner_text("#banner")
    page.fill("#banner input[type=password]", KEY)
    page.click("#banner button")
    wait_for(
        page, "document.body.dataset.ready === 'true' && document.querySelector('#samples img')"
    )
    first = choose_sample(page, "digit-6-label6.png")
    assert first["width"] > 0 and page.is_hidden("#banner")

    # Another client's upload evicts ours from the one-image store: the next view uploads the
    # page's copy again and still answers.
    other = photos()["flower.jpg"].resize((32, 32))
    buffer = io.BytesIO()
    other.save(buffer, format="PNG")
    headers = {"Authorization": f"Bearer {KEY}"}
    files = {"image": ("other.png", buffer.getvalue(), "image/png")}
    assert httpx.post(f"{guarded.url}/v1/images", files=files, headers=headers).status_code == 200
    page.click("#layer-tree [data-layer='conv1']")
    again = changed(page, "maps-result", first["src"])
    assert again["error"] is None and again["caption"].startswith("conv1")
    assert any("status of 404" in error for error in console.errors)  # it was forgotten indeed


def test_the_embedding_places_the_image_among_the_samples(page: Any, server: LiveServer) -> None:
    open_portal(page, server)
    choose_sample(page, "digit-3-label3.png")
    page.click("#tab-embedding")
    # 11 other samples, 40 reference digits and the image itself
    wait_for(page, "document.querySelectorAll('#embedding-result svg .point').length === 52")
    assert page.inner_text("#embedding-result figcaption").startswith("pca of 52 images")
    assert page.eval_on_selector_all("#embedding-result .mine", "(p) => p.length") == 1
    screenshot(page, "11-embedding")
    page.select_option("#embed-layer", "selected")
    wait_for(
        page, "document.querySelector('#embedding-result figcaption').textContent.includes('conv2')"
    )


# --- views of endpoints landing from other branches, against their documented answers -------
# Until /cam, /gradients, /stats, /filters and /maximize are served here, these tests add them
# to /openapi.json and answer them in the browser (page.route) with bodies shaped as those
# branches' schemas say, so the views' drawing and job polling are exercised now. The tests
# above run the same views against the real endpoints once they are merged.

LANDING = {
    "/v1/models/{model}/cam": {
        "post": {
            "parameters": [
                {
                    "name": "method",
                    "in": "query",
                    "schema": {"enum": ["gradcam", "gradcam++", "scorecam"]},
                }
            ]
        }
    },
    "/v1/models/{model}/gradients": {
        "post": {
            "parameters": [
                {"name": "method", "in": "query", "schema": {"enum": ["vanilla", "smoothgrad"]}}
            ]
        }
    },
    "/v1/models/{model}/stats": {"post": {}},
    "/v1/models/{model}/layers/{layer}/filters": {
        "get": {
            "parameters": [{"name": "view", "in": "query", "schema": {"enum": ["auto", "mean"]}}]
        }
    },
    "/v1/models/{model}/layers/{layer}/maximize": {"post": {}},
    "/v1/jobs/{job_id}": {"get": {}},
}


def _stub_landing_endpoints(page: Any, server: LiveServer) -> dict[str, list[str]]:
    """Serve the landing endpoints from the browser; returns the URLs each one was asked."""
    schema = httpx.get(f"{server.url}/openapi.json").json()
    schema["paths"].update(LANDING)
    # and without /v1/methods or /attributions: the pickers fall back to the schema's enums
    for path in ("/v1/methods", "/v1/models/{model}/attributions"):
        schema["paths"].pop(path, None)
    digit = httpx.get(f"{server.url}/ui/samples/digit-3-label3.png").content
    encoded = base64.b64encode(digit).decode()
    asked: dict[str, list[str]] = {}
    polls = iter(["running", "succeeded"])

    def answer(
        route: Any, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        route.fulfill(status=status, json=body, headers=headers or {})

    def handle(route: Any) -> None:
        url = route.request.url
        path = url.split("?")[0].removeprefix(server.url)
        kind = path.rsplit("/", 1)[-1] if "/jobs/" not in path else "job"
        asked.setdefault(kind, []).append(url)
        if kind == "openapi.json":
            return answer(route, schema)
        if "format=npy" in url:  # the values the page draws come from the real endpoint
            return route.continue_()
        if kind == "cam":
            method = re.search(r"method=([^&]+)", url).group(1).replace("%2B", "+")
            return answer(
                route,
                {
                    "method": method,
                    "png_base64": encoded,
                    "maps": [
                        {
                            "layer": "relu3",
                            "image": 0,
                            "target": 3,
                            "label": "3",
                            "min": 0.0,
                            "max": 1.5,
                        }
                    ],
                },
            )
        if kind == "gradients":
            return answer(
                route,
                {
                    "method": "vanilla",
                    "png_base64": encoded,
                    "maps": [{"image": 0, "target": 3, "label": "3", "min": -0.2, "max": 0.3}],
                    "targets": [[{"class_index": 3, "label": "3"}]],
                },
            )
        if kind == "stats":
            layers = [
                {
                    "name": n,
                    "type": "Conv2d",
                    "depth": i,
                    "shape": [16, 8, 8],
                    "sparsity": 0.5,
                    "mean": 0.1,
                    "std": 1.0,
                    "max": 3.0,
                    "dead_fraction": 0.25,
                    "channel_means": [0.1],
                }
                for i, n in enumerate(["conv1", "conv2", "conv3"])
            ]
            return answer(route, {"model": "digits", "images": 1, "layers": layers})
        if kind == "filters":
            return route.fulfill(status=200, body=digit, content_type="image/png")
        if kind == "maximize":
            job = {
                "id": "j1",
                "status": "queued",
                "progress": {"step": 0, "total": 48, "fraction": 0},
            }
            return answer(route, job, 202, {"Location": "/v1/jobs/j1"})
        if kind == "job":
            status = next(polls, "succeeded")
            done = status == "succeeded"
            body = {
                "id": "j1",
                "status": status,
                "eta_s": None if done else 0.2,
                "progress": {
                    "step": 48 if done else 24,
                    "total": 48,
                    "fraction": 1.0 if done else 0.5,
                },
                "result": {
                    "activation": 2.5,
                    "noise_activation": 0.1,
                    "steps": 48,
                    "png_base64": encoded,
                }
                if done
                else None,
            }
            return answer(route, body)
        return route.continue_()

    page.route(
        re.compile(
            r".*/(openapi\.json|v1/models/[^/]+/(cam|gradients|stats)|.*/filters|.*/maximize|v1/jobs/.*)(\?.*)?$"
        ),
        handle,
    )
    return asked


def test_landing_views_draw_their_documented_answers(page: Any, server: LiveServer) -> None:
    asked = _stub_landing_endpoints(page, server)
    open_portal(page, server)
    tabs = page.eval_on_selector_all("#tabs button", "(tabs) => tabs.map((t) => t.dataset.view)")
    assert tabs[:7] == ["maps", "compare", "classes", "trust", "stats", "filters", "synthesis"]
    choose_sample(page, "digit-3-label3.png")

    page.click("#tab-classes")
    cam = settled(page, "cam-result")
    assert cam["error"] is None and cam["caption"].startswith(
        "gradcam on relu3 for the top class '3'"
    )
    assert settled(page, "grad-result")["caption"].startswith("vanilla for the top class '3'")
    assert page.eval_on_selector_all("#cam-method option", "(o) => o.map((x) => x.value)") == [
        "gradcam",
        "gradcam++",
        "scorecam",
    ]
    page.select_option("#cam-method", "gradcam++")
    wait_for(
        page, "document.querySelector('#cam-result figcaption').textContent.startsWith('gradcam++')"
    )
    assert "method=gradcam%2B%2B" in asked["cam"][-1] and "image_id=" in asked["cam"][-1]

    page.click("#tab-stats")
    wait_for(page, "document.querySelectorAll('#stats-result tr[data-layer]').length === 3")
    assert page.get_attribute("#stats-result tr.selected", "data-layer") == "conv2"
    page.click("#stats-result tr[data-layer='conv3']")
    assert current_state(page)["layer"] == "conv3"

    page.click("#tab-filters")
    filters = settled(page, "filters-result")
    assert filters["error"] is None
    assert any("/layers/conv3/filters?format=png" in url for url in asked["filters"])

    page.click("#tab-synthesis")
    page.fill("#synth-steps", "48")
    page.press("#synth-steps", "Enter")
    page.click("#maximize-run")
    shown = settled(page, "synthesis-result")
    assert shown["error"] is None and "activation 2.5 (noise gives 0.1)" in shown["caption"]
    assert page.evaluate("document.getElementById('job-progress').value") == 1
    assert "async=true" in asked["maximize"][0] and "steps=48" in asked["maximize"][0]
    assert len(asked["job"]) == 2


@pytest.fixture(scope="module", autouse=True)
def _fresh_screenshots() -> None:
    """Screenshots of this run only, so the CI artifact never shows stale pictures."""
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
