"""`timm:<model name>`: any `timm.create_model` name, with its pretrained_cfg as defaults.

`weights` is a state_dict file, or `"timm:pretrained"` for the name's pretrained weights,
taken from the local Hugging Face / torch cache only (a download only when downloads are
allowed). `options` are keyword arguments of `timm.create_model` (e.g. `img_size`).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_registry.errors import ConfigError
from model_registry.sources.base import Defaults, FileSource, Weights, read_state_file, target_of
from model_registry.sources.options import check_options, init_of, parameters
from model_registry.spec import ModelSpec

PRETRAINED = "timm:pretrained"
_CROP_MODES = {"center": "crop", "squash": "squash", "border": "letterbox"}


def _interpolation(name: str | None) -> str:
    """timm's `interpolation` (its data config defaults to bicubic; 'random' is for training)."""
    return name if name in ("nearest", "bilinear", "bicubic") else "bicubic"


def _pretrained_cfg(name: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _labels(cfg: Mapping[str, Any], num_classes: int | None) -> tuple[str, ...] | None:
    """ImageNet class descriptions when the weights' classes are an ImageNet subset."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(dict(cfg)) if cfg else None
    if subset is None:
        return None
    labels = tuple(ImageNetInfo(subset).label_descriptions())
    return labels if num_classes in (None, len(labels)) else None


class TimmSource(FileSource):
    prefix = "timm"

    def resolve(self, target: str, base: Path) -> str:
        import timm

        if not timm.is_model(target):
            close = difflib.get_close_matches(target, timm.list_models(), n=5, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown timm model {target!r}{hint} (see timm.list_models())")
        return target

    def resolve_weights(self, weights: str | None, base: Path) -> str | None:
        if weights is not None and weights.startswith("timm:"):
            if weights != PRETRAINED:
                raise ValueError(f"{weights!r}: use {PRETRAINED!r} or a state_dict file")
            return weights
        return super().resolve_weights(weights, base)

    def defaults(self, target: str, weights: str | None, options: Mapping[str, Any]) -> Defaults:
        cfg = _pretrained_cfg(target)
        if not cfg:
            return Defaults()
        size = options.get("img_size")
        if size is None:
            size = cfg["input_size"][1:]
        elif isinstance(size, int):
            size = (size, size)
        num_classes = cfg.get("num_classes") or None
        resize = _CROP_MODES.get(cfg.get("crop_mode", "center"), "crop")
        return Defaults(
            input_size=(int(size[0]), int(size[1])),
            mean=tuple(float(v) for v in cfg["mean"]),
            std=tuple(float(v) for v in cfg["std"]),
            num_classes=num_classes,
            labels=_labels(cfg, num_classes) if weights == PRETRAINED else None,
            resize=resize,
            crop_pct=float(cfg.get("crop_pct") or 1.0),
            interpolation=_interpolation(cfg.get("interpolation")),
        )

    def _create(self, spec: ModelSpec, *, pretrained: bool) -> nn.Module:
        import timm

        options = dict(spec.options or {})
        # Types of the model class's own parameters; other names may be create_model's.
        accepted = _model_parameters(target_of(spec))
        try:
            check_options(
                {k: v for k, v in options.items() if k in accepted},
                accepted,
                builder=f"timm:{target_of(spec)}",
            )
        except ValueError as exc:
            raise ConfigError(f"model {spec.name!r}: field 'options': {exc}") from exc
        try:
            return timm.create_model(
                target_of(spec),
                pretrained=pretrained,
                num_classes=spec.num_classes,
                in_chans=spec.in_channels,
                **options,
            )
        except (TypeError, ValueError, RuntimeError, KeyError) as exc:
            takes = ""
            if isinstance(exc, TypeError) and "keyword argument" in str(exc):
                takes = f" (it takes: {', '.join(sorted(_model_parameters(target_of(spec))))})"
            raise ConfigError(
                f"model {spec.name!r}: field 'options': timm.create_model({target_of(spec)!r}, "
                f"**{options}) failed: {exc}{takes}"
            ) from exc

    def size_option(self, target: str) -> str | None:
        """ViTs and the like are built for one input size (`fixed_input_size`): img_size."""
        return "img_size" if _pretrained_cfg(target).get("fixed_input_size") else None

    def build(self, spec: ModelSpec) -> nn.Module:
        return self._create(spec, pretrained=False)

    def read_weights(self, spec: ModelSpec, *, allow_downloads: bool) -> Weights:
        if spec.weights != PRETRAINED:
            return super().read_weights(spec, allow_downloads=allow_downloads)
        cfg = _pretrained_cfg(target_of(spec))
        labels = _labels(cfg, spec.num_classes)
        cached = _cached_file(cfg)
        if cached is not None:
            return Weights(read_state_file(spec, cached), labels)
        if allow_downloads:
            return Weights(self._create(spec, pretrained=True).state_dict(), labels)
        raise ConfigError(
            f"model {spec.name!r}: field 'weights' ({PRETRAINED!r}): the pretrained weights of "
            f"{target_of(spec)!r} are not in the local Hugging Face or torch cache and downloads "
            "are off; set LAYERSCOPE_ALLOW_DOWNLOADS=true or give a weights file"
        )


def _model_parameters(name: str) -> dict[str, Any]:
    """The options the model class of timm's `name` takes (from the entry point's return
    annotation), besides `timm.create_model`'s own."""
    from timm.models import model_entrypoint

    entrypoint = model_entrypoint(name)
    try:
        cls = typing.get_type_hints(entrypoint).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation: nothing to list
        return {}
    return parameters([init_of(cls)]) if isinstance(cls, type) else {}


def _cached_file(cfg: Mapping[str, Any]) -> Path | None:
    """The pretrained file in the local Hugging Face hub cache or torch hub cache, if there."""
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    url = cfg.get("url")
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if path.is_file() and path.suffix in (".pth", ".pt", ".bin", ".safetensors"):
            return path
    return None
