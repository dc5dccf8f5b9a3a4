"""Methods that attribute to input pixels without being gradient maps: their base class.

Served by `POST /v1/models/{model}/attributions` only (with the gradient methods of
`base`). Each method's parameters are a frozen dataclass `Options` whose fields carry the
defaults, so the registry can list them and the plan can fill what a request leaves out.
Method modules import this module and `base`, never `registry`.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from model_registry.registry import LoadedModel
from service.engine.attribution.methods.base import CAMS, GRADIENTS, GradientInputs

if TYPE_CHECKING:
    from service.engine.attribution.target_objects import Target

INPUT_KIND = "attributions"
GRADIENT_FAMILY = "gradient"
PERTURBATION_FAMILY = "perturbation"


@dataclass(frozen=True)
class InputMaps:
    """What an input method computes.

    Attributes:
        output: the model's output on the batch (logits [B, classes] for a classifier).
        target: the Target explained.
        values: float32 [B, T, C, H, W] on the model input.
        mask: int64 [B, H, W], the feature of each pixel, for methods over a feature mask.
    """

    output: Any
    target: Target
    values: torch.Tensor
    mask: torch.Tensor | None = None


class InputMethod:
    """An attribution to the input pixels that is not one of the gradient maps."""

    name: ClassVar[str]
    summary: ClassVar[str]
    family: ClassVar[str] = PERTURBATION_FAMILY
    needs_gradients: ClassVar[bool] = False
    listing_order: ClassVar[int] = 1000
    Options: ClassVar[type]  # a frozen dataclass whose fields all have defaults

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every parameter with its default."""
        out = {}
        for item in fields(cls.Options):
            if item.default is not MISSING:
                out[item.name] = item.default
            elif item.default_factory is not MISSING:
                out[item.name] = item.default_factory()
        return out

    def validate(self, model: LoadedModel, options: Any) -> None:  # noqa: B027 - optional
        """Raise `InvalidInput` naming the parameter when `options` do not suit `model`."""

    def forward_passes(self, model: LoadedModel, options: Any) -> int:
        """Forward passes per image (for the run-time estimate)."""
        return 1

    def compute(self, inputs: GradientInputs) -> InputMaps:
        raise NotImplementedError


INPUTS: dict[str, InputMethod] = {}


def register_input(cls: type[InputMethod]) -> type[InputMethod]:
    """Class decorator: make the input method available under its `name`."""
    if cls.name in INPUTS or cls.name in CAMS or cls.name in GRADIENTS:
        raise ValueError(f"attribution method {cls.name!r} is registered twice")
    INPUTS[cls.name] = cls()
    return cls
