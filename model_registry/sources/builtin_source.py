"""`builtin:<name>`: the models that ship with layerscope (the digits CNN)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from model_registry.builtin import digits
from model_registry.errors import ConfigError
from model_registry.sources.base import Defaults, FileSource, Weights, read_state_file, target_of
from model_registry.spec import ModelSpec

BUILTIN: dict[str, Callable[[int], nn.Module]] = {"digits": digits.DigitsNet}
BUILTIN_WEIGHTS: dict[str, Path] = {"digits": digits.WEIGHTS_PATH}
BUILTIN_DEFAULTS: dict[str, Defaults] = {
    "digits": Defaults(
        input_size=digits.INPUT_SIZE,
        mean=digits.MEAN,
        std=digits.STD,
        num_classes=len(digits.LABELS),
        labels=digits.LABELS,
        resize="squash",
    )
}


class BuiltinSource(FileSource):
    prefix = "builtin"

    def resolve(self, target: str, base: Path) -> str:
        if target not in BUILTIN:
            raise ValueError(
                f"unknown built-in model {target!r}; choose from "
                f"{', '.join('builtin:' + n for n in BUILTIN)}"
            )
        return target

    def resolve_weights(self, weights: str | None, base: Path) -> str | None:
        if weights is not None and weights.startswith("builtin:"):
            if weights.partition(":")[2] not in BUILTIN_WEIGHTS:
                raise ValueError(
                    f"unknown built-in weights {weights!r}; choose from "
                    f"{', '.join('builtin:' + n for n in BUILTIN_WEIGHTS)}"
                )
            return weights
        return super().resolve_weights(weights, base)

    def defaults(self, target: str, weights: str | None, options: Mapping[str, Any]) -> Defaults:
        return BUILTIN_DEFAULTS.get(target, Defaults())

    def build(self, spec: ModelSpec) -> nn.Module:
        return BUILTIN[target_of(spec)](spec.num_classes)

    def read_weights(self, spec: ModelSpec, *, allow_downloads: bool) -> Weights:
        if spec.weights is not None and spec.weights.startswith("builtin:"):
            name = spec.weights.partition(":")[2]
            if name not in BUILTIN_WEIGHTS:
                raise ConfigError(
                    f"model {spec.name!r}: field 'weights': unknown built-in weights "
                    f"{spec.weights!r}; choose from "
                    f"{', '.join('builtin:' + n for n in BUILTIN_WEIGHTS)}"
                )
            return Weights(read_state_file(spec, BUILTIN_WEIGHTS[name]))
        return super().read_weights(spec, allow_downloads=allow_downloads)
