"""Build a model from its spec through its source and load its weights, strictly.

Each step runs inside `loading_step`: whatever fails there ends start-up as one
`ConfigError` line naming the model, its architecture and the step, and every warning a
library raises there is logged naming the model.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from model_registry.errors import ConfigError
from model_registry.sources import SOURCES, source_for
from model_registry.sources.builtin_source import BUILTIN
from model_registry.sources.options import size_text
from model_registry.sources.torchvision_source import builders
from model_registry.spec import ModelSpec

_RANDOM_INIT_SEED = 0
log = logging.getLogger("layerscope.models")


def known_architectures() -> list[str]:
    """Examples of architecture strings a config may use (timm, hf and python are open-ended)."""
    return [f"builtin:{n}" for n in sorted(BUILTIN)] + [f"torchvision:{n}" for n in builders()]


@dataclass(frozen=True)
class BuiltModel:
    module: nn.Module
    pretrained: bool
    labels: tuple[str, ...] | None


def build_model(spec: ModelSpec, *, allow_downloads: bool = False) -> BuiltModel:
    """The spec's network with its weights, on CPU, in eval mode, parameters frozen.

    Raises:
        ConfigError: unknown architecture, a factory that fails or returns no nn.Module,
            unreadable or mismatching weights; the message names the model and the field.
    """
    try:
        source = source_for(spec.architecture)
    except ValueError as exc:
        raise ConfigError(f"model {spec.name!r}: field 'architecture': {exc}") from exc
    # Random initialisation is seeded so a model without weights is the same on every start.
    with loading_step(spec, "building it"), torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_INIT_SEED)
        module = source.build(spec)
    with loading_step(spec, f"weights {_shown(spec.weights)}"):
        weights = source.read_weights(spec, allow_downloads=allow_downloads)
        if weights.state is not None:
            load_state(module, weights.state, spec)
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    pretrained = weights.pretrained if weights.pretrained is not None else weights.state is not None
    return BuiltModel(module=module, pretrained=pretrained, labels=spec.labels or weights.labels)


def load_state(module: nn.Module, state: dict[str, torch.Tensor], spec: ModelSpec) -> None:
    """Load `state` strictly; ConfigError listing missing, unexpected and mis-shaped keys.

    A state without per-module versions (`_metadata`: safetensors files and plain dicts
    carry none) takes those of the freshly built module, so modules whose
    `_load_from_state_dict` reads its version (MNASNet, BatchNorm, torchvision's ViT
    MLPBlock) read the current one instead of None.
    """
    shown = f" ({_shown(spec.weights)})" if spec.weights is not None else ""
    where = f"model {spec.name!r}: field 'weights'{shown}"
    own = module.state_dict()
    if getattr(state, "_metadata", None) is None:
        state = OrderedDict(state)
        state._metadata = own._metadata  # type: ignore[attr-defined]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if mismatched:
        problems.append(f"shape mismatch {mismatched[:3]}{' ...' if len(mismatched) > 3 else ''}")
    if problems:
        raise ConfigError(f"{where}: does not fit {spec.architecture}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def _shown(weights: str | None) -> str:
    """A weights value as the error line shows it: a file by its name."""
    if weights is None:
        return "(the source's own)"
    return Path(weights).name if Path(weights).is_absolute() else weights


@contextmanager
def loading_step(spec: ModelSpec, step: str, *, hint: str = "") -> Iterator[None]:
    """Run one step of loading `spec`: any exception becomes a one-line `ConfigError`
    "model 'm' (<architecture>): <step>: <error>" (a `ConfigError` passes as it is), and
    every warning raised meanwhile is logged naming the model and the step."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - every start-up failure is one line
            cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise ConfigError(
                f"model {spec.name!r} ({spec.architecture}): {step}: {cause}{hint}"
            ) from exc
        finally:
            for warning in caught:
                log.warning(
                    "model %r (%s): %s: %s: %s",
                    spec.name,
                    spec.architecture,
                    step,
                    warning.category.__name__,
                    " ".join(str(warning.message).split()),
                )


def first_forward_step(spec: ModelSpec) -> AbstractContextManager[None]:
    """`loading_step` for the first forward pass (the catalog's); when it fails and the
    architecture fixes its input size by an option the entry leaves out, the line says so."""
    size = f"[{spec.input_size[0]}, {spec.input_size[1]}]"
    option = source_for(spec.architecture).size_option(spec.architecture.partition(":")[2])
    hint = ""
    if option is not None and option not in (spec.options or {}):
        value = size_text(spec.input_size, square=option == "image_size")
        hint = (
            f"; {spec.architecture} is built for one input size, set by options.{option}: "
            f"add options = {{ {option} = {value} }} or change input_size"
        )
    return loading_step(spec, f"first forward pass at input_size {size}", hint=hint)


__all__ = [
    "SOURCES",
    "BuiltModel",
    "build_model",
    "first_forward_step",
    "known_architectures",
    "load_state",
    "loading_step",
]
