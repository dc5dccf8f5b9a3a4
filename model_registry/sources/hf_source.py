"""`hf:<local directory>`: a Hugging Face vision model written by `save_pretrained`.

The directory holds config.json, the weights and (usually) preprocessor_config.json. The
task comes from config.json's `architectures` (`...ForImageClassification`,
`...ForSemanticSegmentation`, `...ForObjectDetection`) or from the entry's `task`, and the
network is built with the matching Auto class; its forward answers as torchvision's models
of that task do (see `hf_heads`). Nothing is ever downloaded: the directory is all there is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from model_registry.errors import ConfigError
from model_registry.sources.base import (
    Defaults,
    FileSource,
    Weights,
    resolve_path,
    target_of,
)
from model_registry.sources.hf_heads import (
    answer_as_torchvision,
    auto_class,
    config_options,
    task_from_config,
    threshold_of,
)
from model_registry.sources.options import check_options
from model_registry.spec import DETECTION, ModelSpec

_SIMPLE = (bool, int, float, str)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# PIL's filter numbers, which transformers' `resample` keeps (PILImageResampling).
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def _processor_defaults(folder: Path) -> dict[str, Any]:
    """Input size, mean, std and resize mode from the saved image processor."""
    if not (folder / "preprocessor_config.json").is_file():
        return {}
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(str(folder))
    found: dict[str, Any] = {}
    if getattr(processor, "image_mean", None) is not None:
        found["mean"] = tuple(float(v) for v in processor.image_mean)
        found["std"] = tuple(float(v) for v in processor.image_std)
    resample = getattr(processor, "resample", None)
    if resample is not None and int(resample) in _RESAMPLE:
        found["interpolation"] = _RESAMPLE[int(resample)]
    size = dict(getattr(processor, "size", None) or {})
    crop = dict(getattr(processor, "crop_size", None) or {})
    side = size.get("shortest_edge")
    if getattr(processor, "do_center_crop", False) and crop.get("height"):
        found["input_size"] = (int(crop["height"]), int(crop["width"]))
        resized = size.get("height") or side or crop["height"]
        found.update(resize="crop", crop_pct=min(1.0, crop["height"] / resized))
    elif side and side < 384 and getattr(processor, "crop_pct", None):
        # ConvNeXt below 384: the short side goes to side / crop_pct, then a centre crop.
        found.update(input_size=(side, side), resize="crop", crop_pct=float(processor.crop_pct))
    elif size.get("height"):
        found.update(input_size=(int(size["height"]), int(size["width"])), resize="squash")
    elif side:
        found.update(input_size=(side, side), resize="crop", crop_pct=1.0)
    return found


class HFSource(FileSource):
    prefix = "hf"

    def resolve(self, target: str, base: Path) -> str:
        folder = resolve_path(target, base)
        if not folder.is_dir():
            raise ValueError(f"directory {str(folder)!r} does not exist")
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"directory {str(folder)!r} has no config.json; write it with save_pretrained"
            )
        return str(folder)

    def defaults(self, target: str, weights: str | None, options: Mapping[str, Any]) -> Defaults:
        folder = Path(target)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        id2label = config.get("id2label") or {}
        labels = tuple(id2label[k] for k in sorted(id2label, key=int)) if id2label else None
        found = _processor_defaults(folder)
        if "input_size" not in found and isinstance(config.get("image_size"), int):
            found["input_size"] = (config["image_size"], config["image_size"])
        task = task_from_config(config)
        if task == DETECTION and found.get("resize") == "crop":
            # DETR-style processors scale the short side and keep the whole picture.
            found.update(resize="letterbox", crop_pct=1.0)
        return Defaults(
            num_classes=len(labels) if labels else None, labels=labels, task=task, **found
        )

    def _config(self, spec: ModelSpec) -> Any:
        """config.json with `options` as field overrides; an option that is no field of
        the config, or of another type than the field's, is a ConfigError."""
        from transformers import AutoConfig

        options = config_options(spec.options)
        saved = AutoConfig.from_pretrained(target_of(spec))
        fields = {
            name: type(value) if type(value) in _SIMPLE else Any
            for name, value in saved.to_dict().items()
            if not name.startswith("_")
        }
        try:
            check_options(options, fields, builder=f"{type(saved).__name__} (config.json)")
        except ValueError as exc:
            raise ConfigError(f"model {spec.name!r}: field 'options': {exc}") from exc
        config = AutoConfig.from_pretrained(target_of(spec), **options)
        config.num_labels = spec.num_classes
        return config

    def build(self, spec: ModelSpec) -> nn.Module:
        where = f"model {spec.name!r}: field 'architecture' ({spec.architecture!r})"
        try:
            threshold = threshold_of(spec.options)
        except ValueError as exc:
            raise ConfigError(f"model {spec.name!r}: field 'options': {exc}") from exc
        try:
            module = auto_class(spec.task).from_config(self._config(spec))
        except (ValueError, KeyError, OSError, TypeError) as exc:
            raise ConfigError(
                f"{where}: not a {spec.task} model transformers can build: {exc}"
            ) from exc
        return answer_as_torchvision(module, spec.task, threshold=threshold)

    def read_weights(self, spec: ModelSpec, *, allow_downloads: bool) -> Weights:
        """The directory's weights as transformers reads them (it renames old checkpoint keys).

        Anything missing, unexpected or mis-shaped is an error, never a random layer.
        """
        if spec.weights is not None:
            return super().read_weights(spec, allow_downloads=allow_downloads)
        where = f"model {spec.name!r}: field 'weights' (the weights in {target_of(spec)!r})"
        if not any((Path(target_of(spec)) / name).is_file() for name in WEIGHT_FILES):
            raise ConfigError(f"{where}: none found (looked for {', '.join(WEIGHT_FILES)})")
        try:
            loaded, info = auto_class(spec.task).from_pretrained(
                target_of(spec),
                config=self._config(spec),
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # reported below, with the keys, as an error
            )
        except (ValueError, KeyError, OSError, RuntimeError) as exc:
            raise ConfigError(f"{where}: cannot be loaded: {exc}") from exc
        problems = [
            f"{kind.replace('_', ' ')} {sorted(map(_key, info[kind]))[:5]}"
            for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
            if info.get(kind)
        ]
        if problems:
            raise ConfigError(f"{where}: do not fit {spec.architecture}: " + "; ".join(problems))
        return Weights(loaded.state_dict())


def _key(entry: Any) -> str:
    """A key of transformers' loading report (mismatches come as (key, file, model) tuples)."""
    return str(entry[0] if isinstance(entry, tuple) else entry)
