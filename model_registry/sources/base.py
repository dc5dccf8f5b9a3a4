"""The protocol every model source follows, and the weight-file reading they share.

A source is one prefix of `architecture` (`torchvision:`, `timm:`, `hf:`, ...). It turns the
text after the prefix into a network, reads its weights, and says which preprocessing and
labels those weights come with, so a models file may leave them out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from model_registry.errors import ConfigError
from model_registry.spec import ModelSpec

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Defaults:
    """What the weights were trained with; None where the source does not know."""

    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    num_classes: int | None = None
    labels: tuple[str, ...] | None = None
    resize: str | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    task: str | None = None  # known from the builder (torchvision); None: classification


@dataclass(frozen=True)
class Weights:
    """A state_dict to load (None: keep the built module's own) and labels that came with it."""

    state: dict[str, torch.Tensor] | None
    labels: tuple[str, ...] | None = None
    pretrained: bool | None = None  # None: pretrained iff `state` is not None


class ModelSource(Protocol):
    """One `architecture` prefix. Methods raise ValueError (config time) or ConfigError."""

    prefix: str

    def resolve(self, target: str, base: Path) -> str:
        """The canonical target (paths made absolute against the models file's folder)."""
        ...

    def resolve_weights(self, weights: str | None, base: Path) -> str | None:
        """The canonical `weights` value; ValueError when it cannot be used."""
        ...

    def defaults(self, target: str, weights: str | None, options: Mapping[str, Any]) -> Defaults:
        """Preprocessing, class count and labels the model comes with."""
        ...

    def check_options(self, target: str, options: Mapping[str, Any]) -> None:
        """ValueError naming an option the builder does not take, or of the wrong type
        (sources that cannot tell before building check while building)."""
        ...

    def size_option(self, target: str) -> str | None:
        """The option that fixes the model's input size (e.g. `image_size`), if it has one."""
        ...

    def build(self, spec: ModelSpec) -> nn.Module:
        """The network (random weights are seeded by the caller)."""
        ...

    def read_weights(self, spec: ModelSpec, *, allow_downloads: bool) -> Weights:
        """The weights named by `spec.weights`."""
        ...


def target_of(spec: ModelSpec) -> str:
    """The text after the prefix of `spec.architecture`."""
    return spec.architecture.partition(":")[2]


def resolve_path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def resolve_weights_file(weights: str | None, base: Path) -> str | None:
    """A weights file made absolute; it must exist and be a state_dict format."""
    if weights is None:
        return None
    path = resolve_path(weights, base)
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"weights file {weights!r} must end in {', '.join(WEIGHT_SUFFIXES)}")
    if not path.is_file():
        raise ValueError(f"weights file {str(path)!r} does not exist")
    return str(path)


class FileSource:
    """Shared behaviour: `weights` is a state_dict file or absent."""

    prefix = ""

    def check_options(self, target: str, options: Mapping[str, Any]) -> None:
        return None

    def size_option(self, target: str) -> str | None:
        return None

    def resolve_weights(self, weights: str | None, base: Path) -> str | None:
        return resolve_weights_file(weights, base)

    def read_weights(self, spec: ModelSpec, *, allow_downloads: bool) -> Weights:
        if spec.weights is None:
            return Weights(None)
        return Weights(read_state_file(spec, Path(spec.weights)))


def read_state_file(spec: ModelSpec, path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors, or from .pt/.pth/.bin read with weights_only."""
    where = f"model {spec.name!r}: field 'weights' ({str(path)!r})"
    if not path.is_file():
        raise ConfigError(f"{where}: file does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            # weights_only: tensors and plain containers only; never arbitrary pickled objects.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a config error
        raise ConfigError(f"{where}: cannot be read as a state_dict: {exc}") from exc
    return unwrap_state(state, where)


def unwrap_state(state: object, where: str) -> dict[str, torch.Tensor]:
    """Accept a state_dict, or a checkpoint dict holding one under 'state_dict'/'model'."""
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{where}: not a state_dict of tensors")
    prefix = "module."  # saved from DataParallel/DistributedDataParallel
    if state and all(k.startswith(prefix) for k in state):
        metadata = getattr(state, "_metadata", None)
        state = OrderedDict((k[len(prefix) :], v) for k, v in state.items())
        if metadata is not None:  # the per-module versions, under the same names
            state._metadata = OrderedDict(  # type: ignore[attr-defined]
                (k[len(prefix) :] if k.startswith(prefix) else "", v)
                for k, v in metadata.items()
                if k == "module" or k.startswith(prefix)
            )
    return state
