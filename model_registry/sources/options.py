"""A models file's `options` checked against the builder they go to: names and simple types.

A builder's parameters are its own named ones plus, when it forwards `**kwargs` to the
class it returns (torchvision's builders do), that class's `__init__` parameters. Options
are checked before anything is built, so an unknown or mistyped option is a start-up error
instead of an option silently dropped (issue 25).
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# Option names that set a model's input size (torchvision ViT, timm and MaxViT spellings).
GEOMETRY_OPTIONS = ("image_size", "img_size", "input_size")


def parameters(callables: Iterable[Callable[..., Any]]) -> dict[str, Any]:
    """Named keyword-capable parameters of `callables` -> their type hint (Any if unknown)."""
    found: dict[str, Any] = {}
    for function in callables:
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            continue
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # noqa: BLE001 - unresolvable annotations: names only
            hints = {}
        for name, parameter in signature.parameters.items():
            keyword = parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            if keyword and name != "self" and not name.startswith("_"):
                found.setdefault(name, hints.get(name, Any))
    return found


def init_of(cls: type) -> Callable[..., Any]:
    """The `__init__` a class runs (its own or the nearest base's)."""
    return next(vars(k)["__init__"] for k in cls.__mro__ if "__init__" in vars(k))


def takes_var_keywords(function: Callable[..., Any]) -> bool:
    """Whether `function` takes `**kwargs`."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


def check_options(
    options: Mapping[str, Any],
    accepted: Mapping[str, Any],
    *,
    builder: str,
    reserved: Mapping[str, str] | None = None,
) -> None:
    """ValueError naming the first option `builder` does not take or takes another type of.

    `accepted` maps parameter names to type hints (from `parameters`); `reserved` maps the
    names layerscope sets itself to where the models file sets them instead.
    """
    for name, value in options.items():
        if reserved and name in reserved:
            raise ValueError(f"option {name!r} is set by layerscope: {reserved[name]}")
        if name not in accepted:
            takes = ", ".join(sorted(n for n in accepted if not (reserved and n in reserved)))
            raise ValueError(f"{builder} takes no option {name!r} (it takes: {takes})")
        if fits(value, accepted[name]) is False:
            raise ValueError(
                f"option {name!r} of {builder} must be {_describe(accepted[name])}, not {value!r}"
            )


def fits(value: Any, hint: Any) -> bool | None:
    """Whether a TOML value fits a type hint; None where the hint cannot be judged."""
    if hint is Any or isinstance(hint, typing.TypeVar | str):
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        verdicts = [fits(value, arg) for arg in typing.get_args(hint)]
        return True if True in verdicts else (None if None in verdicts else False)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, list | tuple):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if origin is tuple and args and Ellipsis not in typing.get_args(hint):
            if len(args) != len(value):
                return False
            verdicts = [fits(v, a) for v, a in zip(value, args, strict=True)]
        else:
            verdicts = [fits(v, args[0]) for v in value] if args else []
        return False if False in verdicts else (None if None in verdicts else True)
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return callable(value)  # never true of a TOML value
    if isinstance(hint, type):
        return isinstance(value, hint)
    return None


def _describe(hint: Any) -> str:
    text = str(hint) if not isinstance(hint, type) else hint.__name__
    return text.replace("typing.", "").replace("collections.abc.", "")


def geometry_option(options: Mapping[str, Any] | None) -> tuple[str, tuple[int, int]] | None:
    """The option that sets the input size and that size as (height, width), if any.

    Raises:
        ValueError: the option is neither an integer nor [height, width].
    """
    for name in GEOMETRY_OPTIONS:
        value = (options or {}).get(name)
        if value is None:
            continue
        if fits(value, int):
            return name, (value, value)
        if fits(value, tuple[int, int]):
            return name, (int(value[0]), int(value[1]))
        raise ValueError(f"option {name!r} must be an integer or [height, width], not {value!r}")
    return None


def size_text(size: tuple[int, int], *, square: bool = False) -> str:
    """How an input size is written in a models file (one integer for a square option)."""
    return str(size[0]) if square and size[0] == size[1] else f"[{size[0]}, {size[1]}]"
