"""Checks of plain option values shared by every plan: choices, finite floats, caps.

Each raises `InvalidInput` (422) naming the argument, before any computation. A request
option's fixed range is a `Bound`, written once next to its plan: the plan checks values
with it, and the route's pydantic field reads it, so OpenAPI and the engine agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from model_registry.errors import InvalidInput


def check_choice(value: str, choices: tuple[str, ...], *, field: str) -> None:
    if value not in choices:
        raise InvalidInput(
            f"{field}: '{value}' is not one of {', '.join(choices)}",
            field=field,
            choices=list(choices),
        )


def check_finite(
    field: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    strict_low: bool = False,
) -> float:
    """`value` as a float, or a 422 when it is NaN, infinite or outside [low, high]."""
    value = float(value)
    if not math.isfinite(value):
        raise InvalidInput(f"{field}: must be a finite number, got {value}", field=field)
    if low is not None and (value <= low if strict_low else value < low):
        relation = ">" if strict_low else ">="
        raise InvalidInput(
            f"{field}: must be {relation} {low}, got {value}", field=field, valid_range=[low, high]
        )
    if high is not None and value > high:
        raise InvalidInput(
            f"{field}: must be <= {high}, got {value}", field=field, valid_range=[low, high]
        )
    return value


@dataclass(frozen=True)
class Bound:
    """The valid range of one option: [low, high], or (low, high] with `strict_low`."""

    low: float
    high: float
    strict_low: bool = False

    @property
    def limits(self) -> dict[str, Any]:
        """The pydantic `Field` keywords for this range (`gt` or `ge`, and `le`)."""
        return {"gt" if self.strict_low else "ge": self.low, "le": self.high}

    def check(self, field: str, value: float) -> float:
        """A float option: finite and within the range."""
        return check_finite(field, value, low=self.low, high=self.high, strict_low=self.strict_low)

    def check_int(self, field: str, value: int) -> int:
        """An integer option within [low, high]."""
        if not self.low <= value <= self.high:
            low, high = int(self.low), int(self.high)
            raise InvalidInput(
                f"{field} must be between {low} and {high}", field=field, valid_range=[low, high]
            )
        return value


def check_cap(field: str, value: int, cap: int, *, low: int = 1, setting: str | None = None) -> int:
    """An integer option within [low, cap]; the message names the setting that raises the cap."""
    if value < low or value > cap:
        hint = f" (server setting LAYERSCOPE_{setting.upper()})" if setting else ""
        raise InvalidInput(
            f"{field}: {value} is outside the allowed range {low}-{cap}{hint}",
            field=field,
            valid_range=[low, cap],
        )
    return value
