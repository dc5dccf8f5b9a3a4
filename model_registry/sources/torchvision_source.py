"""`torchvision:<builder>`: torchvision's classification, segmentation (fcn, deeplabv3,
lraspp) and detection (fasterrcnn*, retinanet*, fcos, ssd, ssdlite, maskrcnn, keypointrcnn)
models and their weight enums; the builder's module says the task."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from model_registry.errors import ConfigError, closest
from model_registry.sources.base import Defaults, FileSource, Weights, read_state_file, target_of
from model_registry.sources.options import (
    check_options,
    init_of,
    parameters,
    takes_var_keywords,
)
from model_registry.spec import CLASSIFICATION, DETECTION, SEGMENTATION, ModelSpec

# Detection models normalize inside (GeneralizedRCNNTransform and the like): fed [0, 1] pixels.
_IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _tasks() -> dict[str, str]:
    models = torchvision.models
    found = dict.fromkeys(models.list_models(module=models), CLASSIFICATION)
    found.update(dict.fromkeys(models.list_models(module=models.segmentation), SEGMENTATION))
    found.update(dict.fromkeys(models.list_models(module=models.detection), DETECTION))
    return found


def builders() -> list[str]:
    return sorted(_tasks())


def task_of(builder: str) -> str:
    """'classification', 'segmentation' or 'detection', from the builder's module."""
    return _tasks().get(builder, CLASSIFICATION)


# Builder parameters layerscope sets from other fields of the entry.
_RESERVED = {
    "weights": "name the weights in the entry's 'weights' field",
    "progress": "nothing is downloaded while building",
    "num_classes": "give the entry's 'num_classes' field",
    "weights_backbone": "backbone weights are never downloaded; give the whole model's 'weights'",
}
# Options that set the input size, by the class that takes them.
_SIZE_OPTIONS = ("image_size", "input_size")


@functools.cache
def _model_class(name: str) -> type | None:
    """The class a builder returns, from its return annotation (torchvision annotates all)."""
    builder = inspect.unwrap(torchvision.models.get_model_builder(name))
    try:
        found = typing.get_type_hints(builder).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation: the builder's own names only
        return None
    return found if isinstance(found, type) else None


@functools.cache
def builder_parameters(name: str) -> dict[str, Any]:
    """What `torchvision.models.get_model(name, ...)` takes -> type hints: the builder's own
    parameters and, as torchvision's builders pass `**kwargs` on to the model class, its
    `__init__`'s (detection models pass theirs on to `GeneralizedRCNNTransform`)."""
    builder = inspect.unwrap(torchvision.models.get_model_builder(name))
    callables: list[Any] = [builder]
    cls = _model_class(name)
    if cls is not None and takes_var_keywords(builder):
        callables.append(init_of(cls))
        if task_of(name) == DETECTION and takes_var_keywords(init_of(cls)):
            from torchvision.models.detection.transform import GeneralizedRCNNTransform

            callables.append(init_of(GeneralizedRCNNTransform))
    return parameters(callables)


def size_option(name: str) -> str | None:
    """The option that fixes the input size of `name` (ViT: image_size, MaxViT: input_size)."""
    accepted = builder_parameters(name)
    return next((option for option in _SIZE_OPTIONS if option in accepted), None)


def _weights_enum(arch: str, weights: str) -> Any:
    """The torchvision weights entry named by `torchvision:<NAME>`; ValueError if none."""
    try:
        return torchvision.models.get_model_weights(arch)[weights.partition(":")[2]]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unknown torchvision weights {weights!r} for {arch}") from exc


class TorchvisionSource(FileSource):
    prefix = "torchvision"

    def resolve(self, target: str, base: Path) -> str:
        if target not in builders():
            nearest = ", ".join(f"torchvision:{name}" for name in closest(target, builders(), n=3))
            hint = f"did you mean {nearest}? " if nearest else ""
            raise ValueError(
                f"unknown architecture 'torchvision:{target}'; {hint}(use a torchvision "
                "classification, segmentation or detection builder, e.g. "
                f"{', '.join(builders()[:8])}, ...)"
            )
        return target

    def resolve_weights(self, weights: str | None, base: Path) -> str | None:
        if weights is not None and weights.startswith("torchvision:"):
            return weights
        return super().resolve_weights(weights, base)

    def check_options(self, target: str, options: Mapping[str, Any]) -> None:
        check_options(
            options,
            builder_parameters(target),
            builder=f"torchvision.models.{target}",
            reserved=_RESERVED,
        )

    def size_option(self, target: str) -> str | None:
        return size_option(target)

    def defaults(self, target: str, weights: str | None, options: Mapping[str, Any]) -> Defaults:
        """From the weights' own transforms: resize the short side, centre-crop, normalize."""
        task = task_of(target)
        if task != CLASSIFICATION:
            return _dense_defaults(target, weights, task)
        if weights is None or not weights.startswith("torchvision:"):
            return Defaults(task=CLASSIFICATION)
        entry = _weights_enum(target, weights)
        transform = entry.transforms()
        crop = int(transform.crop_size[0])
        resize = int(transform.resize_size[0])
        categories = tuple(entry.meta.get("categories") or ()) or None
        return Defaults(
            input_size=(crop, crop),
            mean=tuple(float(v) for v in transform.mean),
            std=tuple(float(v) for v in transform.std),
            num_classes=len(categories) if categories else None,
            labels=categories,
            resize="crop",
            crop_pct=crop / resize,
            interpolation=transform.interpolation.value,
            task=CLASSIFICATION,
        )

    def build(self, spec: ModelSpec) -> nn.Module:
        """`get_model(name, weights=None, num_classes=..., **options)`, with the options
        torchvision's builder would set for the named torchvision weights (`weights` load
        afterwards, so the builder never sees them)."""
        name = target_of(spec)
        kwargs: dict[str, Any] = {}
        if name in ("googlenet", "inception_v3"):
            kwargs = {"aux_logits": False, "init_weights": True}
        if task_of(name) != CLASSIFICATION:
            # Never a download: the backbone's ImageNet weights stay off; `weights` loads later.
            kwargs = {"weights_backbone": None}
            if task_of(name) == SEGMENTATION and not name.startswith("lraspp"):
                kwargs["aux_loss"] = _has_aux(spec)
        kwargs.update(_options_of_weights(name, spec.weights))
        kwargs.update(spec.options or {})
        try:
            return torchvision.models.get_model(
                name, weights=None, num_classes=spec.num_classes, **kwargs
            )
        except (TypeError, ValueError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise ConfigError(
                f"model {spec.name!r}: field 'options': torchvision.models.{name}"
                f"(num_classes={spec.num_classes}{', ' if shown else ''}{shown}) failed: {exc}"
            ) from exc

    def read_weights(self, spec: ModelSpec, *, allow_downloads: bool) -> Weights:
        if spec.weights is None or not spec.weights.startswith("torchvision:"):
            return super().read_weights(spec, allow_downloads=allow_downloads)
        where = f"model {spec.name!r}: field 'weights' ({spec.weights!r})"
        try:
            weights = _weights_enum(target_of(spec), spec.weights)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        categories = tuple(weights.meta.get("categories") or ()) or None
        if categories is not None and len(categories) != spec.num_classes:
            raise ConfigError(
                f"{where}: these weights have {len(categories)} classes, num_classes is "
                f"{spec.num_classes}"
            )
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if cached.is_file():
            return Weights(read_state_file(spec, cached), categories)
        if allow_downloads:
            return Weights(weights.get_state_dict(progress=False), categories)
        if not spec.weights_required:
            return Weights(None, categories)
        raise ConfigError(
            f"{where}: not in the local torch cache ({cached}) and downloads are off; "
            "set LAYERSCOPE_ALLOW_DOWNLOADS=true or give a weights file"
        )


def _dense_defaults(target: str, weights: str | None, task: str) -> Defaults:
    """Segmentation weights resize to `resize_size` and normalize; detection models take
    [0, 1] pixels at any size (they resize and normalize inside), so mean 0 and std 1."""
    mean, std = _IDENTITY if task == DETECTION else (None, None)
    if weights is None or not weights.startswith("torchvision:"):
        return Defaults(mean=mean, std=std, task=task)
    entry = _weights_enum(target, weights)
    categories = tuple(entry.meta.get("categories") or ()) or None
    transform = entry.transforms()
    size = getattr(transform, "resize_size", None)
    return Defaults(
        input_size=(int(size[0]), int(size[0])) if size else None,
        mean=tuple(float(v) for v in transform.mean) if hasattr(transform, "mean") else mean,
        std=tuple(float(v) for v in transform.std) if hasattr(transform, "std") else std,
        num_classes=len(categories) if categories else None,
        labels=categories,
        resize="squash",
        task=task,
    )


def _options_of_weights(name: str, weights: str | None) -> dict[str, Any]:
    """What torchvision's builder sets when it is given these weights: googlenet and
    inception_v3 normalize inside (`transform_input`), ViT and MaxViT take the weights'
    input size."""
    if weights is None or not weights.startswith("torchvision:"):
        return {}
    entry = _weights_enum(name, weights)
    found: dict[str, Any] = {}
    if name in ("googlenet", "inception_v3"):
        found["transform_input"] = True
    option = size_option(name)
    if option is not None and entry.meta.get("min_size"):
        size = tuple(int(v) for v in entry.meta["min_size"])
        found[option] = size[0] if option == "image_size" else size
    return found


def _has_aux(spec: ModelSpec) -> bool:
    """torchvision's segmentation weights carry the auxiliary classifier's keys."""
    return bool(spec.weights and spec.weights.startswith("torchvision:"))
