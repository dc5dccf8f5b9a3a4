"""The attribution method registry: finds every method module and looks methods up by name.

As timm registers model factories (`timm/models/_registry.py`) and torch-cam keeps one
class per CAM, every method is one class in one module of this package (see `base`): it
has a name, says whether it needs gradients, validates a model and layer before any
compute, and computes its map. The API's method enums, `GET /v1/methods` and the portal's
method lists all read this registry, so adding a method is adding a module (and its test).

Method modules import `base`, never this module, so loading them cannot loop back here.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

from model_registry.errors import InvalidInput
from service.engine.attribution.methods.base import (
    CAM_KIND,
    CAMS,
    GRADIENT_KIND,
    GRADIENTS,
    CamInputs,
    CamMethod,
    GradientInputs,
    GradientMethod,
    register,
)
from service.engine.attribution.methods.input_base import INPUTS, InputMethod

__all__ = [
    "CAM_KIND",
    "GRADIENT_KIND",
    "CamInputs",
    "CamMethod",
    "GradientInputs",
    "GradientMethod",
    "cam_method",
    "cam_methods",
    "gradient_method",
    "gradient_methods",
    "input_method",
    "input_methods",
    "register",
]

_loaded = False


def _load() -> None:
    """Import every module of this package once, so their `@register` lines run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{info.name}")


def _listed(table: dict[str, T]) -> list[T]:
    _load()
    return sorted(table.values(), key=lambda m: m.listing_order)


def cam_methods() -> list[CamMethod]:
    """Every CAM method, in listing order."""
    return _listed(CAMS)


def gradient_methods() -> list[GradientMethod]:
    """Every gradient method, in listing order."""
    return _listed(GRADIENTS)


def input_methods() -> list[GradientMethod | InputMethod]:
    """Every method that attributes to input pixels: the gradient methods, then the rest."""
    return [*gradient_methods(), *_listed(INPUTS)]


T = TypeVar("T", CamMethod, GradientMethod, InputMethod, GradientMethod | InputMethod)


def _choice(name: str, methods: list[T]) -> T:
    names = [m.name for m in methods]
    if name not in names:
        raise InvalidInput(
            f"method: '{name}' is not one of {', '.join(names)}", field="method", choices=names
        )
    return methods[names.index(name)]


def cam_method(name: str) -> CamMethod:
    """The CAM method called `name`; 422 naming the choices otherwise."""
    return _choice(name, cam_methods())


def gradient_method(name: str) -> GradientMethod:
    """The gradient method called `name`; 422 naming the choices otherwise."""
    return _choice(name, gradient_methods())


def input_method(name: str) -> GradientMethod | InputMethod:
    """The input-space method called `name`; 422 naming the choices otherwise."""
    return _choice(name, input_methods())
