"""Build a model from its spec through its source and load its weights, strictly."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model_registry.errors import ConfigError
from model_registry.sources import SOURCES, source_for
from model_registry.sources.builtin_source import BUILTIN
from model_registry.sources.torchvision_source import builders
from model_registry.spec import ModelSpec

_RANDOM_INIT_SEED = 0


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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_INIT_SEED)
        module = source.build(spec)
    weights = source.read_weights(spec, allow_downloads=allow_downloads)
    if weights.state is not None:
        load_state(module, weights.state, spec)
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    pretrained = weights.pretrained if weights.pretrained is not None else weights.state is not None
    return BuiltModel(module=module, pretrained=pretrained, labels=spec.labels or weights.labels)


def load_state(module: nn.Module, state: dict[str, torch.Tensor], spec: ModelSpec) -> None:
    """Load `state` strictly; ConfigError listing missing, unexpected and mis-shaped keys."""
    where = f"model {spec.name!r}: field 'weights'"
    own = module.state_dict()
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


__all__ = ["SOURCES", "BuiltModel", "build_model", "known_architectures", "load_state"]
