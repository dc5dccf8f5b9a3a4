"""Read the models TOML file into `ModelSpec`s, with errors that name entry and field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model_registry.builtin import digits
from model_registry.errors import ConfigError
from model_registry.spec import ModelSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Entry(BaseModel):
    """One `[[models]]` table; unknown keys are rejected so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    architecture: str
    weights: str | None = None
    input_size: tuple[Annotated[int, Field(ge=8, le=4096)], Annotated[int, Field(ge=8, le=4096)]]
    mean: list[float]
    std: list[float]
    num_classes: Annotated[int, Field(ge=1)]
    labels: str | list[str] | None = None

    @field_validator("mean", "std")
    @classmethod
    def _one_or_three(cls, value: list[float]) -> list[float]:
        if len(value) not in (1, 3):
            raise ValueError("needs 1 (grayscale) or 3 (RGB) values")
        return value

    @field_validator("std")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError("every std value must be > 0")
        return value

    @model_validator(mode="after")
    def _same_channels(self) -> _Entry:
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std must have the same length")
        return self


def _read_labels(value: str | list[str] | None, base: Path) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(value)
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise ValueError(f"labels file {str(path)!r} does not exist")
    return tuple(
        line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    )


def _resolve_weights(value: str | None, base: Path) -> str | None:
    if value is None or value.startswith(("torchvision:", "builtin:")):
        return value
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    if path.suffix not in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"weights file {value!r} must end in .safetensors, .pt or .pth")
    if not path.is_file():
        raise ValueError(f"weights file {str(path)!r} does not exist")
    return str(path)


def load_config(path: str | Path) -> list[ModelSpec]:
    """Parse a models TOML file. Relative paths are resolved against the file's folder.

    Raises:
        ConfigError: the file is missing or malformed, or an entry is invalid; the message
            names the entry (index and name) and the field.
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"models file {str(path)!r} (LAYERSCOPE_MODELS) does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"models file {str(path)!r} is not valid TOML: {exc}") from exc
    tables = document.get("models")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"models file {str(path)!r} needs at least one [[models]] table")
    specs: list[ModelSpec] = []
    for index, table in enumerate(tables):
        where = f"models file {str(path)!r}, entry {index} ({table.get('name', '?')!r})"
        try:
            entry = _Entry.model_validate(table)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "entry"
            raise ConfigError(f"{where}: field '{field}': {first['msg']}") from exc
        specs.append(_to_spec(entry, where, path.parent))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"models file {str(path)!r}: duplicate model names {duplicates}")
    return specs


def _to_spec(entry: _Entry, where: str, base: Path) -> ModelSpec:
    try:
        weights = _resolve_weights(entry.weights, base)
    except ValueError as exc:
        raise ConfigError(f"{where}: field 'weights': {exc}") from exc
    try:
        labels = _read_labels(entry.labels, base)
    except ValueError as exc:
        raise ConfigError(f"{where}: field 'labels': {exc}") from exc
    if labels is not None and len(labels) != entry.num_classes:
        raise ConfigError(
            f"{where}: field 'labels': {len(labels)} labels for num_classes={entry.num_classes}"
        )
    return ModelSpec(
        name=entry.name,
        architecture=entry.architecture,
        weights=weights,
        input_size=(entry.input_size[0], entry.input_size[1]),
        mean=tuple(entry.mean),
        std=tuple(entry.std),
        num_classes=entry.num_classes,
        labels=labels,
    )


def default_specs() -> list[ModelSpec]:
    """What is served when LAYERSCOPE_MODELS is unset: `digits` and `resnet18`.

    resnet18 takes torchvision's ImageNet weights when they are in the local torch cache
    (see `model_registry.loading`), and random weights otherwise.
    """
    return [
        ModelSpec(
            name="digits",
            architecture="builtin:digits",
            weights="builtin:digits",
            input_size=digits.INPUT_SIZE,
            mean=digits.MEAN,
            std=digits.STD,
            num_classes=10,
            labels=digits.LABELS,
        ),
        ModelSpec(
            name="resnet18",
            architecture="torchvision:resnet18",
            weights="torchvision:DEFAULT",
            weights_required=False,
            input_size=(224, 224),
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            num_classes=1000,
        ),
    ]
