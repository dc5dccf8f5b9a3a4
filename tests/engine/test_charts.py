"""Colorbars with ticks in value units and sorted bar charts for vectors, checked by pixel."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.charts import (
    _NEGATIVE,
    _POSITIVE,
    BAR_CHART_WIDTH,
    BAR_HEIGHT,
    COLORBAR_HEIGHT,
    bar_chart,
    colorbar,
    nice_ticks,
    tick_label,
)
from service.engine.feature_maps import LayerMaps, is_vector, layer_picture
from service.engine.render import RenderOptions, colormap_lut


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (-3.2, 7.9, [-2.5, 0.0, 2.5, 5.0, 7.5]),
        (0.013, 0.047, [0.02, 0.03, 0.04]),
        (5.0, 5.0, [5.0]),
        (0.0, float("nan"), []),
    ],
)
def test_nice_ticks_are_round_and_inside_the_range(
    low: float, high: float, expected: list[float]
) -> None:
    ticks = nice_ticks(low, high)
    assert ticks == pytest.approx(expected)
    assert all(low <= t <= high for t in ticks)


def test_tick_labels_are_short() -> None:
    assert [tick_label(v) for v in (0.0, 0.25, 1234.5, 2e-5, 3e6)] == [
        "0",
        "0.25",
        "1.23e+03",
        "2.0e-05",
        "3.0e+06",
    ]


def test_colorbar_runs_through_the_colormap_with_ticks_at_their_values() -> None:
    bar = colorbar(0.0, 1.0, colormap="viridis", width=201)
    lut = colormap_lut("viridis")
    assert bar.shape == (COLORBAR_HEIGHT, 201, 3)
    assert (bar[0, 0] == lut[0]).all() and (bar[0, -1] == lut[255]).all()
    assert (bar[5, 100] == lut[np.round(np.linspace(0, 255, 201)).astype(int)[100]]).all()
    # tick marks under the strip at 0, 0.25, ... 1 (x = value * 200)
    marks = np.flatnonzero(bar[11, :, 0] < 100)
    assert list(marks) == [0, 50, 100, 150, 200]
    assert (bar[16:, :, :] < 128).any()  # tick labels are written


def test_a_narrow_colorbar_drops_overlapping_ticks() -> None:
    bar = colorbar(-0.123, 0.456, colormap="magma", width=40)
    marks = np.flatnonzero(bar[11, :, 0] < 100)
    assert 1 <= len(marks) <= 2


def test_bar_chart_sorts_values_and_draws_lengths_in_proportion() -> None:
    values = np.array([1.0, 4.0, -2.0, 2.0], np.float32)
    chart = bar_chart(values, ["a", "b", "c", "d"])
    assert chart.shape[1] == BAR_CHART_WIDTH and chart.shape[0] == 4 * BAR_HEIGHT + 20
    lengths = []
    for row in range(4):
        middle = chart[row * BAR_HEIGHT + 2 + BAR_HEIGHT // 2]
        blue = (middle == _POSITIVE).all(axis=1).sum()
        red = (middle == _NEGATIVE).all(axis=1).sum()
        lengths.append(int(blue) if blue else -int(red))
    # largest first: 4, 2, 1, -2, each bar's length proportional to its value
    assert lengths[0] > lengths[1] > lengths[2] > 0 > lengths[3]
    assert lengths[1] / lengths[0] == pytest.approx(0.5, abs=0.03)
    assert lengths[3] / lengths[0] == pytest.approx(-0.5, abs=0.03)


def test_bar_chart_keeps_the_top_values() -> None:
    values = np.arange(100, dtype=np.float32)
    chart = bar_chart(values, [str(i) for i in range(100)], top=10)
    assert chart.shape[0] == 10 * BAR_HEIGHT + 20


def _layer(values: np.ndarray) -> LayerMaps:
    channels = values.shape[1]
    return LayerMaps(
        name="fc",
        shape=(channels, *values.shape[2:]),
        values=values,
        channels=np.arange(channels)[None],
    )


def test_a_vector_layer_is_drawn_as_a_bar_chart_and_a_map_gets_a_colorbar() -> None:
    rng = np.random.default_rng(0)
    background = np.zeros((32, 32, 3), np.uint8)
    vector = _layer(rng.normal(size=(1, 16, 1, 1)).astype(np.float32))
    assert is_vector(vector, "none") and not is_vector(vector, "mean")
    chart = layer_picture(vector, 0, reduce="none", background=background, options=RenderOptions())
    assert chart.shape[1] == BAR_CHART_WIDTH and chart.shape[0] == 16 * BAR_HEIGHT + 20

    maps = _layer(rng.normal(size=(1, 4, 8, 8)).astype(np.float32))
    options = RenderOptions(upsample=32, scale="shared")
    with_bar = layer_picture(maps, 0, reduce="none", background=background, options=options)
    grid_height = 2 * 32 + 2
    assert with_bar.shape == (grid_height + 4 + COLORBAR_HEIGHT, 2 * 32 + 2, 3)
    lut = colormap_lut("viridis")
    assert (with_bar[grid_height + 4, 0] == lut[0]).all()
    plain = RenderOptions(upsample=32, labels=False)
    assert layer_picture(maps, 0, reduce="none", background=background, options=plain).shape[0] == (
        grid_height
    )
