"""Read the models TOML file into `ModelSpec`s, with errors that name entry and field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from model_registry.datasets import DIGITS, FolderDataset, scan_folder
from model_registry.errors import ConfigError
from model_registry.sources import source_for
from model_registry.sources.options import geometry_option, size_text
from model_registry.spec import CLASSIFICATION, ModelSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

E = TypeVar("E", bound=BaseModel)


class _Entry(BaseModel):
    """One `[[models]]` table; unknown keys are rejected so typos do not pass silently.

    `input_size`, `mean`, `std`, `num_classes`, `resize`, `crop_pct` and `interpolation` may
    be left out when the source knows them from the weights (torchvision weights, timm's
    pretrained_cfg, a saved Hugging Face processor and config).
    """

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    architecture: str
    weights: str | None = None
    input_size: (
        tuple[Annotated[int, Field(ge=8, le=4096)], Annotated[int, Field(ge=8, le=4096)]] | None
    ) = None
    mean: list[float] | None = None
    std: list[float] | None = None
    num_classes: Annotated[int, Field(ge=1)] | None = None
    labels: str | list[str] | None = None
    resize: Literal["squash", "crop", "letterbox"] | None = None
    crop_pct: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos"] | None = None
    options: dict[str, Any] | None = None
    task: Literal["classification", "segmentation", "detection"] | None = None

    @field_validator("mean", "std")
    @classmethod
    def _one_or_three(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) not in (1, 3):
            raise ValueError("needs 1 (grayscale) or 3 (RGB) values")
        return value

    @field_validator("std")
    @classmethod
    def _positive(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(v <= 0 for v in value):
            raise ValueError("every std value must be > 0")
        return value


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


def _read_document(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"models file {str(path)!r} (LAYERSCOPE_MODELS) does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"models file {str(path)!r} is not valid TOML: {exc}") from exc


def _validated(model: type[E], table: Any, where: str) -> E:
    """`table` as `model`; else a `ConfigError` naming `where` and the first bad field."""
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "entry"
        raise ConfigError(f"{where}: field '{field}': {first['msg']}") from exc


def load_config(path: str | Path) -> list[ModelSpec]:
    """Parse a models TOML file. Relative paths are resolved against the file's folder.

    Raises:
        ConfigError: the file is missing or malformed, or an entry is invalid; the message
            names the entry (index and name) and the field.
    """
    path = Path(path)
    document = _read_document(path)
    tables = document.get("models")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"models file {str(path)!r} needs at least one [[models]] table")
    specs: list[ModelSpec] = []
    for index, table in enumerate(tables):
        where = f"models file {path}: model {table.get('name', f'#{index}')!r}"
        entry = _validated(_Entry, table, where)
        specs.append(_to_spec(entry, where, path.parent))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"models file {str(path)!r}: duplicate model names {duplicates}")
    return specs


def _to_spec(entry: _Entry, where: str, base: Path, *, weights_required: bool = True) -> ModelSpec:
    try:
        source = source_for(entry.architecture)
        target = source.resolve(entry.architecture.partition(":")[2], base)
    except ValueError as exc:
        raise ConfigError(f"{where}: field 'architecture': {exc}") from exc
    try:
        weights = source.resolve_weights(entry.weights, base)
    except ValueError as exc:
        raise ConfigError(f"{where}: field 'weights': {exc}") from exc
    try:
        source.check_options(target, entry.options or {})
        geometry = geometry_option(entry.options)
    except ValueError as exc:
        raise ConfigError(f"{where}: field 'options': {exc}") from exc
    try:
        found = source.defaults(target, weights, entry.options or {})
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(
            f"{where}: field 'architecture': cannot read its defaults: {exc}"
        ) from exc
    input_size = entry.input_size or (geometry[1] if geometry else None) or found.input_size
    if geometry is not None and entry.input_size is not None:
        _agree((entry.input_size[0], entry.input_size[1]), geometry, where)
    mean = tuple(entry.mean) if entry.mean is not None else found.mean
    std = tuple(entry.std) if entry.std is not None else found.std
    num_classes = entry.num_classes or found.num_classes
    for field, value in (
        ("input_size", input_size),
        ("mean", mean),
        ("std", std),
        ("num_classes", num_classes),
    ):
        if value is None:
            raise ConfigError(
                f"{where}: field '{field}': required ({entry.architecture!r} does not say it)"
            )
    assert input_size is not None and mean is not None and std is not None and num_classes
    if len(mean) != len(std):
        raise ConfigError(f"{where}: field 'std': mean and std must have the same length")
    try:
        labels = _read_labels(entry.labels, base)
    except ValueError as exc:
        raise ConfigError(f"{where}: field 'labels': {exc}") from exc
    if labels is not None and len(labels) != num_classes:
        raise ConfigError(
            f"{where}: field 'labels': {len(labels)} labels for num_classes={num_classes}"
        )
    if labels is None and found.labels is not None and len(found.labels) == num_classes:
        labels = found.labels
    task = _task(entry, found.task, where)
    return ModelSpec(
        name=entry.name,
        architecture=f"{source.prefix}:{target}",
        weights=weights,
        input_size=(int(input_size[0]), int(input_size[1])),
        mean=tuple(mean),
        std=tuple(std),
        num_classes=num_classes,
        labels=labels,
        weights_required=weights_required,
        resize=entry.resize or found.resize or "squash",
        crop_pct=entry.crop_pct or found.crop_pct or 1.0,
        interpolation=entry.interpolation or found.interpolation or "bilinear",
        options=dict(entry.options) if entry.options else None,
        task=task,
    )


def _agree(input_size: tuple[int, int], geometry: tuple[str, tuple[int, int]], where: str) -> None:
    """`input_size` and the option that builds the model for an input size must agree."""
    option, size = geometry
    if input_size != size:
        raise ConfigError(
            f"{where}: field 'input_size': {list(input_size)} disagrees with options.{option} "
            f"= {size_text(size, square=True)}, for which the model is built; change one of "
            f"them, or leave input_size out (it follows options.{option})"
        )


def _task(entry: _Entry, known: str | None, where: str) -> str:
    """The source's task (torchvision builders) or the entry's `task`; they must agree."""
    if known is not None and entry.task is not None and entry.task != known:
        raise ConfigError(
            f"{where}: field 'task': {entry.architecture!r} is a {known} model, not {entry.task}"
        )
    return known or entry.task or CLASSIFICATION


def default_specs() -> list[ModelSpec]:
    """What is served when LAYERSCOPE_MODELS is unset: `digits` and `resnet18`.

    resnet18 takes torchvision's ImageNet weights when they are in the local torch cache
    (see `model_registry.sources.torchvision_source`), and random weights otherwise; its
    preprocessing is that of those weights (resize to 256, centre crop 224).
    """
    here = Path(__file__).parent
    digits = _Entry(name="digits", architecture="builtin:digits", weights="builtin:digits")
    resnet = _Entry(
        name="resnet18", architecture="torchvision:resnet18", weights="torchvision:DEFAULT"
    )
    return [
        _to_spec(digits, "default model 'digits'", here),
        _to_spec(resnet, "default model 'resnet18'", here, weights_required=False),
    ]


class _DatasetEntry(BaseModel):
    """One `[[datasets]]` table: a name, an ImageFolder path and, for the localisation
    metrics of /evaluate, a folder of object masks (paths relative to the file)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    path: Annotated[str, Field(min_length=1)]
    masks: Annotated[str | None, Field(min_length=1)] = None


def load_datasets(path: str | Path) -> list[FolderDataset]:
    """The folder datasets of a models file, each folder listed (ImageFolder layout).

    Raises:
        ConfigError: a bad `[[datasets]]` table, a duplicate or reserved name, or a folder
            that is missing or holds no pictures; the message names the dataset and field.
    """
    path = Path(path)
    tables = _read_document(path).get("datasets", [])
    if not isinstance(tables, list):
        raise ConfigError(f"models file {path}: 'datasets' must be [[datasets]] tables")
    found: list[FolderDataset] = []
    for index, table in enumerate(tables):
        name = table.get("name", f"#{index}") if isinstance(table, dict) else f"#{index}"
        where = f"models file {path}: dataset {name!r}"
        entry = _validated(_DatasetEntry, table, where)
        if entry.name == DIGITS or entry.name in {d.name for d in found}:
            reason = "is the built-in dataset's" if entry.name == DIGITS else "is taken"
            raise ConfigError(f"{where}: field 'name': the name {reason}; choose another")
        masks = None if entry.masks is None else _beside(path, entry.masks)
        try:
            found.append(scan_folder(entry.name, _beside(path, entry.path), masks))
        except (ValueError, OSError) as exc:
            field = "masks" if masks is not None and "masks folder" in str(exc) else "path"
            raise ConfigError(f"{where}: field '{field}': {exc}") from exc
    return found


def _beside(models_file: Path, name: str) -> Path:
    """A folder named in the models file: absolute, or relative to the file."""
    folder = Path(name)
    return folder if folder.is_absolute() else models_file.parent / folder
