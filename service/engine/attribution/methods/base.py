"""What an attribution method is: the base classes, their inputs and `@register`.

Method modules import this module only; `registry` finds them and looks them up. A method
gets its own parameters (`GradientMethod.Options`), never the whole request plan, so no
method depends on the plan or on another method's options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch

from model_registry.catalog import LayerInfo
from model_registry.layout import MapLayout
from model_registry.registry import LoadedModel

if TYPE_CHECKING:
    from service.engine.attribution.target_objects import Target, TargetRequest

CAM_KIND = "cam"
GRADIENT_KIND = "gradients"


@dataclass(frozen=True)
class CamSampling:
    """The sampled CAMs' parameters (sscam, iscam, smoothgradcam++): None takes the
    method's torchcam default; `seed` seeds the CPU generator the noise is drawn from."""

    samples: int | None = None
    noise: float | None = None
    seed: int = 0


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
        eigen_smooth: pytorch-grad-cam's `eigen_smooth`: the map is the first principal
            component of the method's weighted activations instead of their sum.
        sampling: the sampled CAMs' `samples`, `noise` and `seed`.
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
    eigen_smooth: bool = False
    sampling: CamSampling = CamSampling()


class CamMethod:
    """A class activation map: `compute` returns [B, T, h, w] before the final ReLU."""

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_gradients: ClassVar[bool] = False
    listing_order: ClassVar[int] = 1000  # where the method appears in listings
    uses_layer: ClassVar[bool] = True  # False: it reads the whole model (`layer` refused)
    parameters: ClassVar[frozenset[str]] = frozenset()  # of `CamSampling` it reads

    def validate(self, model: LoadedModel, layer: LayerInfo) -> None:  # noqa: B027 - optional
        """Raise `InvalidInput` naming the field when `layer` of `model` does not suit."""

    def compute(self, inputs: CamInputs) -> torch.Tensor:
        raise NotImplementedError


Choose = Callable[[Any, slice], "Target"]


@dataclass(frozen=True)
class GradientInputs:
    """What a gradient method may use.

    Attributes:
        request: what is explained (`target_objects`).
        options: the method's own parameters, an instance of its `Options`.
        choose: (output of a chunk, the chunk's slice of the batch) -> its Target.
        fixed_targets: the Target when it is given (the sanity check's re-run).
        rows: inputs per forward/backward pass.
    """

    model: LoadedModel
    batch: torch.Tensor
    request: TargetRequest
    options: Any
    choose: Choose
    fixed_targets: Target | None
    rows: int
    budget: int


@dataclass(frozen=True)
class NoOptions:
    """The parameters of a method that takes none."""


class GradientMethod:
    """A map w.r.t. the input: `compute` returns (the model's output (logits [B, classes]
    for a classifier), the Target, values [B, T, C, H, W]).

    `Options` is a frozen dataclass of the method's own parameters; its field names are
    the request's option names, so `options(plan)` picks them from the plan.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_gradients: ClassVar[bool] = True
    listing_order: ClassVar[int] = 1000
    Options: ClassVar[type] = NoOptions

    @classmethod
    def options(cls, plan: object) -> Any:
        """This method's parameters, read by name from `plan` (any object with them)."""
        return cls.Options(**{f.name: getattr(plan, f.name) for f in fields(cls.Options)})

    def validate(self, model: LoadedModel, layer: str | None) -> str | None:
        """Check the method's own inputs; returns the layer it uses (None: none)."""
        return None

    def compute(self, inputs: GradientInputs) -> tuple[Any, Target, torch.Tensor]:
        raise NotImplementedError


CAMS: dict[str, CamMethod] = {}
GRADIENTS: dict[str, GradientMethod] = {}

M = TypeVar("M", type[CamMethod], type[GradientMethod])


def register(cls: M) -> M:
    """Class decorator: make the method available under its `name`."""
    if cls.name in CAMS or cls.name in GRADIENTS:
        raise ValueError(f"attribution method {cls.name!r} is registered twice")
    if issubclass(cls, CamMethod):
        CAMS[cls.name] = cls()
    else:
        GRADIENTS[cls.name] = cls()
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


def register_gradient(
    name: str, summary: str, *, order: int, options: type = NoOptions
) -> Callable[[GradientFn], GradientFn]:
    """Function decorator: `compute(inputs)` becomes the gradient method `name`, whose
    parameters are the fields of the dataclass `options`."""
    return _registered(GradientMethod, name, summary, order, Options=options)
