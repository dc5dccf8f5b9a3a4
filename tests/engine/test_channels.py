"""The channel grammar and its application."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_registry.errors import InvalidInput
from service.engine.channels import check_channels, parse_channels, select_channels


@pytest.mark.parametrize(
    ("text", "channels", "expected"),
    [
        ("all", 5, [0, 1, 2, 3, 4]),
        ("first:3", 10, [0, 1, 2]),
        ("first:30", 4, [0, 1, 2, 3]),
        ("last:2", 10, [8, 9]),
        ("0,3,8-10", 12, [0, 3, 8, 9, 10]),
        (" 4, 2 ,2-3 ", 6, [4, 2, 3]),
        ("ALL", 2, [0, 1]),
    ],
)
def test_selection_picks_the_named_channels(text: str, channels: int, expected: list[int]) -> None:
    activation = np.broadcast_to(
        np.arange(channels, dtype=np.float32).reshape(1, channels, 1, 1), (2, channels, 3, 3)
    ).copy()
    values, index = select_channels(activation, parse_channels(text))
    assert index.tolist() == [expected, expected]
    assert values[:, :, 0, 0].tolist() == [[float(c) for c in expected]] * 2


def test_top_is_per_image_largest_mean_first() -> None:
    activation = np.zeros((2, 5, 2, 2), np.float32)
    activation[0, :, 0, 0] = [1.0, 5.0, 3.0, 0.0, 2.0]
    activation[1, :, 1, 1] = [9.0, 0.0, 1.0, 7.0, 8.0]
    values, index = select_channels(activation, parse_channels("top:3"))
    assert index.tolist() == [[1, 2, 4], [0, 4, 3]]
    assert np.array_equal(values[1, 0], activation[1, 0])


@pytest.mark.parametrize(
    "text", ["", "first:", "first:0", "top:-1", "1,,2", "a-b", "5-2", "first:3:4", "0x10", "1.5"]
)
def test_bad_grammar_is_a_422_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_channels(text)
    assert info.value.field == "channels"
    assert info.value.status == 422


def test_out_of_range_names_the_valid_range() -> None:
    with pytest.raises(InvalidInput) as info:
        check_channels(parse_channels("0,64"), 64, layer="conv1")
    assert "0-63" in info.value.detail and info.value.extra["valid_range"] == [0, 63]


def test_huge_ranges_are_refused_before_expanding() -> None:
    with pytest.raises(InvalidInput, match="more than"):
        parse_channels("0-9999999")


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 20)), min_size=1, max_size=12))
def test_lists_round_trip(items: list[tuple[int, int]]) -> None:
    text = ",".join(f"{a}-{a + n}" if n else str(a) for a, n in items)
    expected: list[int] = []
    for a, n in items:
        expected.extend(c for c in range(a, a + n + 1) if c not in expected)
    selection = parse_channels(text)
    assert selection.indices() == expected
    assert selection.size(1000) == len(expected)
    check_channels(selection, max(expected) + 1, layer="x")
    with pytest.raises(InvalidInput):
        check_channels(selection, max(expected), layer="x")


@given(st.sampled_from(["first", "last", "top"]), st.integers(1, 50), st.integers(1, 40))
def test_counts_select_min_of_n_and_c(kind: str, n: int, channels: int) -> None:
    activation = np.random.default_rng(n).standard_normal((1, channels, 2, 2)).astype(np.float32)
    values, index = select_channels(activation, parse_channels(f"{kind}:{n}"))
    assert values.shape == (1, min(n, channels), 2, 2)
    assert len(set(index[0].tolist())) == min(n, channels)
