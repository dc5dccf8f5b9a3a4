"""The Compare models tab on two digits checkpoints: the job with progress, the CKA heatmap
(layers_a x layers_b cells; a click loads both layers' feature maps), the flipped pictures (a
click loads both explanations), per-class accuracy bars and the drift curve."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LiveServer, digits_entry, serving, toml_table
from tests.portal.conftest import open_portal, screenshot, wait_for
from tests.routes.test_compare_api import write_second_digits

pytestmark = pytest.mark.browser
RESULT = "#models-result"


@pytest.fixture(scope="module")
def two_digits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder: Path = tmp_path_factory.mktemp("compare-view")
    config = folder / "models.toml"
    config.write_text(
        digits_entry()
        + toml_table(
            "models",
            name="digits-b",
            architecture="builtin:digits",
            weights=write_second_digits(folder),
            input_size=[32, 32],
            mean=[0.5],
            std=[0.5],
            num_classes=10,
        )
    )
    with serving({"LAYERSCOPE_MODELS": str(config), "LAYERSCOPE_LOG_LEVEL": "warning"}) as live:
        yield live


def count(page: Any, selector: str) -> int:
    return page.eval_on_selector_all(selector, "(nodes) => nodes.length")


def loaded(selector: str, n: int) -> str:
    return (
        f"[...document.querySelectorAll({selector!r})]"
        f".filter((i) => i.complete && i.naturalWidth > 0).length === {n}"
    )


def test_two_checkpoints_compared_in_the_portal(open_tab: Any, two_digits: LiveServer) -> None:
    page = open_tab(1400, 1100).page
    open_portal(page, two_digits, "#view=models&ma=digits&mb=digits-b&mlimit=60")
    wait_for(page, "document.querySelectorAll('#models-dataset option').length >= 1")
    assert page.input_value("#models-a") == "digits" and page.input_value("#models-b") == "digits-b"
    page.click("#models-run")
    wait_for(page, f"document.querySelectorAll('{RESULT} td.cka-cell').length > 0", timeout=120)
    assert "done: 60 pictures" in page.inner_text("#models-job-text")
    result = page.evaluate(
        "fetch('/v1/compare/datasets/digits?models=digits,digits-b&limit=60', {method: 'POST'})"
        ".then((r) => r.headers.get('Location'))"
    )
    wait_for(page, f"fetch({result!r}).then((r) => r.json()).then((j) => j.status === 'succeeded')")
    body = page.evaluate(f"fetch('{result}/result').then((r) => r.json())")
    rows, columns = len(body["cka"]["layers_a"]), len(body["cka"]["layers_b"])
    assert count(page, f"{RESULT} td.cka-cell") == rows * columns
    assert count(page, f"{RESULT} table.cka tbody tr") == rows
    assert count(page, f"{RESULT} .colorbar") == 1
    # The diagonal of one architecture's two checkpoints reads as numbers in [0, 1].
    shown = page.eval_on_selector_all(
        f"{RESULT} td.cka-cell", "(cells) => cells.map((c) => Number(c.textContent))"
    )
    assert all(0 <= v <= 1 for v in shown)
    # A click on a cell: both layers' feature maps for the current picture.
    cell = f"{RESULT} td.cka-cell[data-row='relu3'][data-column='relu2']"
    page.click(cell)
    wait_for(page, loaded("#models-detail img.feature-map", 2), timeout=60)
    captions = page.inner_text("#models-detail")
    assert "digits · relu3" in captions and "digits-b · relu2" in captions
    # Flips: one thumbnail per flipped picture (up to 48); a click: both explanations.
    flips = count(page, f"{RESULT} .flip")
    assert flips == min(48, len(body["flips"])) and flips > 0
    wait_for(page, loaded(f"{RESULT} .flip img", flips), timeout=60)
    page.click(f"{RESULT} .flip >> nth=0")
    wait_for(page, loaded("#models-detail img.explanations", 1), timeout=60)
    width = page.evaluate("document.querySelector('#models-detail img.explanations').naturalWidth")
    assert width > 2 * 32
    # Per-class bars: two per class; the drift curve: one point per shared layer.
    assert count(page, f"{RESULT} svg.class-bars g[data-class]") == len(body["per_class"])
    assert count(page, f"{RESULT} svg.class-bars rect.class-bar") == 2 * len(body["per_class"])
    assert count(page, f"{RESULT} svg.drift-curve circle.drift-point") == len(body["drift"]) > 0
    page.click(cell)
    wait_for(page, loaded("#models-detail img.feature-map", 2), timeout=60)
    screenshot(page, "20-compare-models")
