"""The channel selection grammar and its application.

Grammar: `all` | `first:N` | `last:N` | `top:N` | a list of indices and inclusive ranges
such as `0,3,8-15`. Counts larger than the layer are clamped (a count is a wish); list
indices outside the layer are errors (an index is a promise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from model_registry.errors import InvalidInput

_COUNT = re.compile(r"^(first|last|top):(\d{1,7})$")
_ITEM = re.compile(r"^(\d{1,7})(?:-(\d{1,7}))?$")
GRAMMAR = "all | first:N | last:N | top:N | a list like 0,3,8-15"


@dataclass(frozen=True)
class ChannelSelection:
    """A parsed `channels` value. `ranges` holds inclusive (start, stop) pairs for lists."""

    kind: str
    count: int = 0
    ranges: tuple[tuple[int, int], ...] = ()

    def size(self, num_channels: int) -> int:
        """How many channels this selects from a layer with `num_channels`."""
        if self.kind == "all":
            return num_channels
        if self.kind == "list":
            return len(self.indices())
        return min(self.count, num_channels)

    def indices(self) -> list[int]:
        """List selections: indices in the order given, duplicates dropped."""
        seen: dict[int, None] = {}
        for start, stop in self.ranges:
            seen.update(dict.fromkeys(range(start, stop + 1)))
        return list(seen)

    def highest(self) -> int:
        return max(stop for _, stop in self.ranges)


def parse_channels(
    text: str, *, field: str = "channels", max_items: int = 65536
) -> ChannelSelection:
    """Parse the grammar; errors name the field and show the grammar."""
    value = text.strip().lower()
    if value == "all":
        return ChannelSelection("all")
    match = _COUNT.match(value)
    if match:
        count = int(match.group(2))
        if count < 1:
            raise InvalidInput(
                f"{field}: N in '{text}' must be at least 1", field=field, grammar=GRAMMAR
            )
        return ChannelSelection(match.group(1), count=count)
    ranges = []
    total = 0
    for item in value.split(","):
        item_match = _ITEM.match(item.strip())
        if not item_match:
            raise InvalidInput(
                f"{field}: cannot read '{text}'; expected {GRAMMAR}", field=field, grammar=GRAMMAR
            )
        start = int(item_match.group(1))
        stop = int(item_match.group(2)) if item_match.group(2) is not None else start
        if stop < start:
            raise InvalidInput(
                f"{field}: range '{item.strip()}' runs backwards", field=field, grammar=GRAMMAR
            )
        total += stop - start + 1
        if total > max_items:
            raise InvalidInput(
                f"{field}: selects more than {max_items} channels", field=field, max_items=max_items
            )
        ranges.append((start, stop))
    return ChannelSelection("list", ranges=tuple(ranges))


def check_channels(
    selection: ChannelSelection, num_channels: int, *, layer: str, field: str = "channels"
) -> None:
    """Raise a 422 that names the valid range when a listed index is outside the layer."""
    if selection.kind == "list" and selection.highest() >= num_channels:
        raise out_of_range(selection.highest(), num_channels, layer=layer, field=field)


def out_of_range(channel: int, num_channels: int, *, layer: str, field: str) -> InvalidInput:
    """The 422 for a channel the layer does not have, naming the valid range."""
    return InvalidInput(
        f"{field}: channel {channel} is out of range for layer '{layer}', which has "
        f"{num_channels} channels (valid: 0-{num_channels - 1})",
        field=field,
        layer=layer,
        valid_range=[0, num_channels - 1],
    )


def select_channels(
    activation: np.ndarray, selection: ChannelSelection
) -> tuple[np.ndarray, np.ndarray]:
    """Pick channels from [B, C, H, W] (numpy: selection runs in the CPU pool).

    Returns:
        The selected maps [B, k, H, W] and their channel indices [B, k] (for `top:N` they
        differ per image: the k largest mean activations, largest first; ties keep channel
        order).
    """
    batch, num_channels = activation.shape[:2]
    if selection.kind == "top":
        k = min(selection.count, num_channels)
        means = activation.mean(axis=(2, 3), dtype=np.float64)
        index = np.argsort(-means, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(activation, index[:, :, None, None], axis=1), index
    if selection.kind == "all":
        order = np.arange(num_channels)
    elif selection.kind == "first":
        order = np.arange(min(selection.count, num_channels))
    elif selection.kind == "last":
        order = np.arange(num_channels - min(selection.count, num_channels), num_channels)
    else:
        order = np.asarray(selection.indices(), dtype=np.int64)
    return activation[:, order], np.broadcast_to(order, (batch, order.size))
