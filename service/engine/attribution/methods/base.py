"""Attribution methods, each a class registered under its API name.

As timm registers model factories (`timm/models/_registry.py`) and torch-cam keeps one
class per CAM, every method here is one class in one module of this package: it has a
name, says whether it needs gradients, validates a model and layer before any compute,
and computes its map. The API's method enums, `GET /v1/methods` and the portal's method
lists all read this registry, so adding a method is adding a module (and its test).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch

from model_registry.catalog import LayerInfo
from model_registry.errors import InvalidInput
from model_registry.layout import MapLayout
from model_registry.registry import LoadedModel

if TYPE_CHECKING:
    from service.engine.attribution.plan import GradientPlan
    from service.engine.attribution.target_objects import Target

CAM_KIND = "cam"
GRADIENT_KIND = "gradients"


@dataclass(frozen=True)
class CamInputs:
    """What a CAM method may use for one layer of one request.

    Attributes:
        batch: the preprocessed inputs [B, C, H, W] on the model's device.
        output: the layer's raw output, detached; `layout` reads it as maps.
        activations: that output as float maps [B, C, h, w].
        gradients: d(target scores)/d(maps) [B, T, C, h, w] when the method needs them.
        logits: the model's output, detached ([B, classes] logits for a classifier).
        targets: int64 [B, T], the class of each target.
        target: what is explained (`target_objects`): `target.scores(output, images)` scores
            any forward pass a method runs.
        budget: device memory (bytes) a chunk of perturbed inputs may take.
    """

    model: LoadedModel
    batch: torch.Tensor
    layer: str
    calls: int
    output: torch.Tensor
    layout: MapLayout
    activations: torch.Tensor
    gradients: torch.Tensor | None
    logits: Any
    targets: torch.Tensor
    budget: int
    target: Target


class CamMethod:
    """A class activation map: `compute` returns [B, T, h, w] before the final ReLU."""

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_gradients: ClassVar[bool] = False
    listing_order: ClassVar[int] = 1000  # where the method appears in listings

    def validate(self, model: LoadedModel, layer: LayerInfo) -> None:  # noqa: B027 - optional
        """Raise `InvalidInput` naming the field when `layer` of `model` does not suit."""

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        raise NotImplementedError


Choose = Callable[[Any, slice], "Target"]


@dataclass(frozen=True)
class GradientInputs:
    """What a gradient method may use.

    Attributes:
        choose: (output of a chunk, the chunk's slice of the batch) -> its Target.
        fixed_targets: the Target when it is given (the sanity check's re-run).
        rows: inputs per forward/backward pass.
    """

    model: LoadedModel
    batch: torch.Tensor
    plan: GradientPlan
    choose: Choose
    fixed_targets: Target | None
    rows: int
    budget: int


class GradientMethod:
    """A map w.r.t. the input: `compute` returns (the model's output (logits [B, classes]
    for a classifier), the Target, values [B, T, C, H, W])."""

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_gradients: ClassVar[bool] = True
    listing_order: ClassVar[int] = 1000

    def validate(self, model: LoadedModel, layer: str | None) -> str | None:
        """Check the method's own inputs; returns the layer it uses (None: none)."""
        return None

    def compute(self, inputs: GradientInputs) -> tuple[Any, Target, torch.Tensor]:
        raise NotImplementedError


_CAMS: dict[str, CamMethod] = {}
_GRADIENTS: dict[str, GradientMethod] = {}
_loaded = False

M = TypeVar("M", type[CamMethod], type[GradientMethod])


def register(cls: M) -> M:
    """Class decorator: make the method available under its `name`."""
    if cls.name in _CAMS or cls.name in _GRADIENTS:
        raise ValueError(f"attribution method {cls.name!r} is registered twice")
    if issubclass(cls, CamMethod):
        _CAMS[cls.name] = cls()
    else:
        _GRADIENTS[cls.name] = cls()
    return cls


CamFn = Callable[[CamInputs], torch.Tensor]
GradientFn = Callable[[GradientInputs], tuple[Any, "Target", torch.Tensor]]


def _registered(base: type, name: str, summary: str, order: int, **extra: object) -> Callable:
    def wrap(compute: Callable) -> Callable:
        attributes = {"name": name, "summary": summary, "listing_order": order, **extra}
        attributes.update(compute=staticmethod(compute), __doc__=compute.__doc__)
        register(type(compute.__name__, (base,), attributes))
        return compute

    return wrap


def register_cam(
    name: str, summary: str, *, order: int, needs_gradients: bool = False
) -> Callable[[CamFn], CamFn]:
    """Function decorator, as timm's `register_model`: `compute(inputs)` becomes the CAM
    method `name` (one that validates nothing beyond the layer being spatial)."""
    return _registered(CamMethod, name, summary, order, needs_gradients=needs_gradients)


def register_gradient(name: str, summary: str, *, order: int) -> Callable[[GradientFn], GradientFn]:
    """Function decorator: `compute(inputs)` becomes the gradient method `name`."""
    return _registered(GradientMethod, name, summary, order)


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
    return _listed(_CAMS)


def gradient_methods() -> list[GradientMethod]:
    """Every gradient method, in listing order."""
    return _listed(_GRADIENTS)


T = TypeVar("T", CamMethod, GradientMethod)


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
