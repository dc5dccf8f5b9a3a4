"""The registry: model name -> a resident, frozen model on its device, with its catalog."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from model_registry.catalog import LayerCatalog, build_catalog
from model_registry.errors import ConfigError, unknown_model
from model_registry.fast_paths.packed_check import check_whole_model
from model_registry.fast_paths.packed_convolution import speed_up_convolutions
from model_registry.fast_paths.pooling import speed_up_max_pooling
from model_registry.loading import build_model, first_forward_step
from model_registry.spec import DETECTION, ModelSpec


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve. `module` is shared by all requests and must be left as found."""

    spec: ModelSpec
    module: nn.Module
    device: torch.device
    catalog: LayerCatalog
    pretrained: bool
    labels: tuple[str, ...] | None

    @property
    def name(self) -> str:
        return self.spec.name

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels is not None else str(index)


def resolve_device(requested: str | None) -> torch.device:
    """CUDA when available, else CPU; `requested` (e.g. 'cpu', 'cuda:1') overrides.

    Raises:
        ConfigError: `requested` is not a device name, or names one this machine lacks.
    """
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise ConfigError(
                f"setting LAYERSCOPE_DEVICE: {requested!r} is not a torch device "
                "(e.g. cpu, cuda, cuda:1, mps)"
            ) from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"setting LAYERSCOPE_DEVICE: {requested!r}, but CUDA is not available"
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    spec: ModelSpec,
    device: torch.device,
    *,
    allow_downloads: bool = False,
    pack_convolutions: bool = True,
    channels_last_pooling: bool = True,
) -> LoadedModel:
    """Build, move to `device` and catalog one model; the catalog pass doubles as warm-up.

    `pack_convolutions`: on the CPU, convolutions inside `packed_weights()` (a CAM's passes)
    run on weights reordered for oneDNN once, equal to torch's to float rounding
    (`model_registry/fast_paths/packed_convolution.py`); everywhere else they run torch's
    own kernel.
    `channels_last_pooling`: max pooling without a gradient runs on a channels-last copy
    (`model_registry/fast_paths/pooling.py`).
    """
    built = build_model(spec, allow_downloads=allow_downloads)
    module = built.module.to(device)
    if channels_last_pooling:
        speed_up_max_pooling(module)
    # Detection keeps torch's kernels: proposal ranking and non-maximum suppression can turn
    # a rounding difference into other boxes, and each picture's own size would keep
    # reordering the weights anyway.
    packable = pack_convolutions and device.type == "cpu" and spec.task != DETECTION
    if packable and speed_up_convolutions(module, model=spec.name):
        check_whole_model(module, _example_input(spec, device), model=spec.name)
    with first_forward_step(spec):  # a failure is one start-up line naming the model
        catalog = build_catalog(spec.name, module, (spec.in_channels, *spec.input_size), device)
    return LoadedModel(spec, module, device, catalog, built.pretrained, built.labels)


def _example_input(spec: ModelSpec, device: torch.device) -> torch.Tensor:
    """A seeded picture-like input for checks at load time (the catalog's pass uses zeros)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn((1, spec.in_channels, *spec.input_size), generator=generator).to(device)


class ModelRegistry:
    """Explicit name -> LoadedModel map; names are keys, never paths."""

    def __init__(self, models: Iterable[LoadedModel]) -> None:
        self._models = {m.name: m for m in models}

    @classmethod
    def load(
        cls,
        specs: Iterable[ModelSpec],
        device: torch.device,
        *,
        allow_downloads: bool = False,
        pack_convolutions: bool = True,
        channels_last_pooling: bool = True,
    ) -> ModelRegistry:
        return cls(
            load_model(
                s,
                device,
                allow_downloads=allow_downloads,
                pack_convolutions=pack_convolutions,
                channels_last_pooling=channels_last_pooling,
            )
            for s in specs
        )

    def get(self, name: str) -> LoadedModel:
        try:
            return self._models[name]
        except KeyError:
            raise unknown_model(name, self._models) from None

    def names(self) -> list[str]:
        return list(self._models)

    def __iter__(self) -> Iterator[LoadedModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)
