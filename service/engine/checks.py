"""Checks of plain option values shared by every plan: choices, finite floats, caps.

Each raises `InvalidInput` (422) naming the argument, before any computation.
"""

from __future__ import annotations

import math

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
