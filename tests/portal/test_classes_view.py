"""The class view and the trust view: maps drawn from their values, colorbars, hover, random
weights said loudly, method pickers and parameter inputs built from GET /v1/methods, every
method ranked by faithfulness."""

from __future__ import annotations

from typing import Any

import httpx
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


def test_cam_and_gradient_maps_have_colorbars_hover_values_and_an_opacity_slider(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = sample_page(open_tab, portal_server, "digit-3-label3.png", "#view=classes")
    cam = settled(page, "cam-result")
    assert cam["error"] is None, cam
    assert cam["caption"].startswith("gradcam on relu3 for the top class '3'")
    assert cam["shownWidth"] == cam["width"] and cam["width"] > 200  # the column's width
    gradients = settled(page, "grad-result")
    assert gradients["error"] is None, gradients
    for figure in ("cam-result", "grad-result"):
        ticks = page.eval_on_selector_all(
            f"#{figure} .colorbar .tick", "(ticks) => ticks.map((t) => t.textContent)"
        )
        assert len(ticks) >= 2
        assert all(float(t) == float(t) for t in ticks)  # numbers in the values' units
        if figure == "grad-result":  # the heatmap view shows |gradient|: nothing below zero
            assert min(float(t) for t in ticks) >= 0
    picture = page.locator("#cam-result img.panel").bounding_box()
    page.mouse.move(picture["x"] + picture["width"] / 2, picture["y"] + picture["height"] / 2)
    readout = wait_for(page, "document.querySelector('#cam-result .readout').textContent")
    assert readout.startswith("CAM value at x ")
    before = page.get_attribute("#cam-result img.panel", "src")
    page.fill("#overlay-alpha", "0.9")
    wait_for(page, f"document.querySelector('#cam-result img.panel').src !== {before!r}")
    assert page.evaluate("location.hash").count("alpha=0.9") == 1
    screenshot(page, "03-classes-cam-gradients")


def _listed(server: LiveServer, endpoint: str) -> list[dict[str, Any]]:
    methods = httpx.get(f"{server.url}/v1/methods", timeout=30).json()["data"]
    return [m for m in methods if endpoint in m["endpoints"]]


def _options(page: Any, select: str) -> list[str]:
    return page.eval_on_selector_all(f"{select} option", "(o) => o.map((x) => x.value)")


def test_method_pickers_list_exactly_what_v1_methods_lists(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = sample_page(open_tab, portal_server, "digit-4-label4.png", "#view=classes")
    settled(page, "grad-result")
    assert _options(page, "#cam-method") == [m["name"] for m in _listed(portal_server, "cam")]
    inputs = _listed(portal_server, "attributions")
    assert _options(page, "#grad-method") == [m["name"] for m in inputs]
    assert {"occlusion", "kernelshap", "deeplift", "vanilla"} <= set(_options(page, "#grad-method"))
    for method in ("occlusion", "feature-ablation", "integrated-gradients"):
        page.select_option("#grad-method", method)
        (entry,) = [m for m in inputs if m["name"] == method]
        names = sorted(entry["parameters"])
        wait_for(
            page,
            "[...document.querySelectorAll('#grad-params [data-param]')]"
            f".map((i) => i.dataset.param).sort().join() === {','.join(names)!r}",
        )
        for name, default in entry["parameters"].items():
            field = f"#grad-param-{name}"
            shown = page.get_attribute(field, "placeholder") or page.inner_text(
                f"{field} option[value='']"
            )
            assert str(default) in shown, (method, name, shown)


def test_picking_occlusion_renders_its_map_with_its_own_parameters(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = sample_page(open_tab, portal_server, "digit-5-label5.png", "#view=classes")
    settled(page, "grad-result")
    page.select_option("#grad-method", "occlusion")
    wait_for(page, "document.getElementById('grad-param-window')")
    assert not page.query_selector("#grad-param-steps")  # another method's parameter
    shown = settled(page, "grad-result", 120)
    assert shown["error"] is None and shown["caption"].startswith("occlusion for the top class")
    first = shown["src"]
    page.fill("#grad-param-window", "8")
    page.press("#grad-param-window", "Enter")
    wait_for(page, "location.hash.includes('gparams=window%3D8')")
    again = settled(page, "grad-result", 120)
    assert again["error"] is None and again["src"] != first
    ticks = page.eval_on_selector_all(
        "#grad-result .colorbar .tick", "(ticks) => ticks.map((t) => t.textContent)"
    )
    assert len(ticks) >= 2 and min(float(t) for t in ticks) >= 0  # |attribution|
    page.select_option("#grad-method", "integrated-gradients")
    wait_for(page, "document.getElementById('grad-param-steps')")
    page.fill("#grad-param-steps", "8")
    page.press("#grad-param-steps", "Enter")
    shown = settled(page, "grad-result")
    assert shown["error"] is None and shown["caption"].startswith("integrated-gradients")
    assert "steps%3D8" in page.evaluate("location.hash")


def test_random_weights_are_said_loudly_where_resnet18_predicts(
    open_tab: Any, portal_server: LiveServer
) -> None:
    page = open_tab().page
    open_portal(page, portal_server, "#view=classes")
    page.select_option("#model", "resnet18")
    page.click("#samples button[data-sample='china.jpg']")
    wait_for(page, "document.querySelectorAll('#predictions button.class').length === 5")
    assert page.is_visible("#classes-warning .warning")
    assert "random weights" in page.inner_text("#classes-warning")
    assert page.is_visible("#model-info .random")
    settled(page, "cam-result", 120)
    settled(page, "grad-result", 120)
    screenshot(page, "04-random-weights-warning")
    page.click("#tab-maps")
    page.fill("#layer-search", "fc")
    page.click("#layer-tree [data-layer='fc']")
    wait_for(page, "document.querySelector('#maps-result .warning.random-weights')", 120)
    assert page.eval_on_selector_all("#maps-result .bar-row", "(r) => r.length") == 20
    page.click("#tab-classes")
    page.select_option("#model", "digits")
    wait_for(page, "!document.querySelector('#classes-warning .warning')")


def test_the_trust_view_ranks_every_method_by_faithfulness(
    open_tab: Any, portal_server: LiveServer
) -> None:
    tab = open_tab()
    # Methods that do not apply to the digits CNN (attention rollout, LeGrad: ViTs only)
    # answer 422; the row says why, and the browser logs the failed request.
    tab.allowed.append("status of 422")
    page = tab.page
    open_portal(page, portal_server, "#view=trust&tsteps=8&trand=1")
    choose_sample(page, "digit-2-label2.png")
    wait_for(page, "document.getElementById('trust-result').dataset.methods", timeout=480)
    rows = page.eval_on_selector_all(
        "#trust-result table.trust tbody tr",
        "(rows) => rows.map((r) => [r.dataset.method, r.querySelector('.auc-deletion')"
        ".textContent, r.querySelector('.auc-insertion').textContent,"
        " r.querySelector('.sanity').textContent])",
    )
    listed = [m["name"] for m in httpx.get(f"{portal_server.url}/v1/methods").json()["data"]]
    assert sorted(r[0] for r in rows) == sorted(listed)  # every method, CAM or not
    refused = [r for r in rows if not r[1]]
    assert all(r[3].startswith(f"method: {r[0]} ") for r in refused), refused
    with_aucs = [r for r in rows if r[1] and r[2] and r[1] != "…" and r[1] != "–"]
    assert {"gradcam", "occlusion", "kernelshap", "deeplift", "vanilla"} <= {
        r[0] for r in with_aucs
    }, rows
    score = [float(r[2]) - float(r[1]) for r in with_aucs]
    assert score == sorted(score, reverse=True)  # ranked by faithfulness
    assert page.eval_on_selector_all("#trust-result .trust-card img", "(i) => i.length") >= 5
    flagged = page.eval_on_selector_all(
        "#trust-result table.trust tr:has(.sanity.fails)",
        "(rows) => rows.map((r) => r.dataset.method)",
    )
    assert {"guided-backprop", "guided-gradcam"} <= set(flagged)
    screenshot(page, "05-trust-view")
