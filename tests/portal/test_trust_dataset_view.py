"""The Trust tab's dataset mode on the digits model: the evaluation job from the portal, its
methods x metrics table (mean and 95% interval per cell, equal to the job's answer), sorting
by a column, one bar chart per metric with error bars, and a method's best and worst pictures
with its map over them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import LiveServer
from tests.portal.conftest import open_portal, screenshot, wait_for

pytestmark = pytest.mark.browser
METHODS = ("gradcam", "vanilla", "input-x-gradient")
METRICS = ("deletion", "sparseness", "complexity")  # lower, higher, lower is better
LIMIT = 8
RESULT = "#trust-dataset-result"


def column(page: Any, metric: str) -> list[tuple[str, float]]:
    """(method, shown mean) per row, top to bottom, for one metric's column."""
    return page.eval_on_selector_all(
        f"{RESULT} tbody tr",
        f"""(rows) => rows.map((r) => [r.dataset.method,
            Number(r.querySelector('td[data-metric="{metric}"]').dataset.mean)])""",
    )


def job_result(page: Any) -> dict[str, Any]:
    """The same evaluation asked of the API directly (seed 0: the same numbers)."""
    location = page.evaluate(
        f"fetch('/v1/models/digits/datasets/digits/evaluate?methods={','.join(METHODS)}"
        f"&metrics={','.join(METRICS)}&limit={LIMIT}', {{method: 'POST'}})"
        ".then((r) => r.headers.get('Location'))"
    )
    wait_for(
        page, f"fetch({location!r}).then((r) => r.json()).then((j) => j.status === 'succeeded')"
    )
    return page.evaluate(f"fetch('{location}/result').then((r) => r.json())")


def test_trust_tab_scores_methods_over_a_dataset(open_tab: Any, portal_server: LiveServer) -> None:
    page = open_tab(1400, 1300).page
    open_portal(
        page,
        portal_server,
        f"#model=digits&view=trust&tmode=dataset&tlimit={LIMIT}"
        f"&tmethods={','.join(METHODS)}&tmetrics={','.join(METRICS)}",
    )
    wait_for(page, "document.querySelectorAll('#trust-metrics input').length > 10")
    checked = page.eval_on_selector_all(
        "#trust-dataset input:checked", "(boxes) => boxes.map((b) => b.value)"
    )
    assert sorted(checked) == sorted(METHODS + METRICS)
    assert page.is_hidden("#trust-result") and page.is_visible("#trust-dataset-run")
    page.click("#trust-dataset-run")
    cells = len(METHODS) * len(METRICS)
    wait_for(page, f"document.querySelectorAll('{RESULT} td.metric-cell').length === {cells}", 120)
    assert f"done: {LIMIT} pictures" in page.inner_text("#trust-dataset-job-text")
    # Each cell: the job's mean and its interval, as the API gives them.
    body = job_result(page)
    expected = {m["method"]: m["metrics"] for m in body["methods"]}
    shown = page.eval_on_selector_all(
        f"{RESULT} td.metric-cell",
        "(cells) => cells.map((c) => [c.closest('tr').dataset.method, c.dataset.metric,"
        " Number(c.dataset.mean), c.textContent])",
    )
    assert len(shown) == cells
    for method, metric, mean, text in shown:
        stat = expected[method][metric]
        assert mean == pytest.approx(stat["mean"], rel=1e-9)
        low, high = stat["ci95"]
        assert low <= mean <= high and "[" in text and "]" in text
    headers = page.eval_on_selector_all(
        f"{RESULT} thead th", "(ths) => ths.map((t) => t.textContent)"
    )
    assert any(t.startswith("deletion ↓") for t in headers)
    assert any(t.startswith("sparseness ↑") for t in headers)
    # Sorting: a click on a column puts its best mean first, a second click its worst.
    for metric, higher in (("sparseness", True), ("deletion", False)):
        page.click(f"{RESULT} th[data-column='{metric}']")
        means = [v for _, v in column(page, metric)]
        assert means == sorted(means, reverse=higher)
        assert "best first" in page.inner_text(f"{RESULT} th[data-column='{metric}']")
        page.click(f"{RESULT} th[data-column='{metric}']")
        means = [v for _, v in column(page, metric)]
        assert means == sorted(means, reverse=not higher)
    # One bar chart per metric: a bar and an error bar (3 lines) per method.
    assert page.eval_on_selector_all(
        f"{RESULT} svg.metric-chart", "(s) => s.map((x) => x.dataset.metric)"
    ) == [r["metric"] for r in body["rankings"]]
    for metric in METRICS:
        chart = f"{RESULT} svg.metric-chart[data-metric='{metric}']"
        assert page.eval_on_selector_all(f"{chart} rect.metric-bar", "(r) => r.length") == len(
            METHODS
        )
        assert page.eval_on_selector_all(f"{chart} line.error-bar", "(r) => r.length") == 3 * len(
            METHODS
        )
    # A method's click: its best and worst pictures per metric, each with its map over it.
    page.click(f"{RESULT} tr[data-method='gradcam'] button.trust-method")
    for metric in METRICS:
        row = f"#trust-dataset-detail .extremes-row[data-metric='{metric}']"
        for kind in ("best", "worst"):
            indices = page.eval_on_selector_all(
                f"{row} .{kind} figure", "(f) => f.map((x) => Number(x.dataset.index))"
            )
            assert indices == expected["gradcam"][metric][kind] and indices
    pictures = 2 * sum(len(expected["gradcam"][m]["best"]) for m in METRICS)
    loaded = (
        "[...document.querySelectorAll('#trust-dataset-detail img.extreme')]"
        f".filter((i) => i.complete && i.naturalWidth === 84).length === {pictures}"
    )
    wait_for(page, loaded, 60)
    screenshot(page, "21-trust-dataset")
