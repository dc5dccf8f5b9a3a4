"""Build a model from its spec and load its weights, refusing anything but tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from model_registry.builtin import digits
from model_registry.errors import ConfigError, closest
from model_registry.spec import ModelSpec

BUILTIN: dict[str, Callable[[int], nn.Module]] = {"digits": digits.DigitsNet}
BUILTIN_WEIGHTS: dict[str, Path] = {"digits": digits.WEIGHTS_PATH}
_RANDOM_INIT_SEED = 0


def known_architectures() -> list[str]:
    """Every architecture string a config may use."""
    tv = sorted(torchvision.models.list_models(module=torchvision.models))
    return [f"builtin:{n}" for n in sorted(BUILTIN)] + [f"torchvision:{n}" for n in tv]


@dataclass(frozen=True)
class BuiltModel:
    module: nn.Module
    pretrained: bool
    labels: tuple[str, ...] | None


def build_model(spec: ModelSpec, *, allow_downloads: bool = False) -> BuiltModel:
    """The spec's network with its weights, on CPU, in eval mode, parameters frozen.

    Raises:
        ConfigError: unknown architecture, unreadable or mismatching weights.
    """
    module = _build_architecture(spec)
    state, labels = _read_weights(spec, allow_downloads=allow_downloads)
    if state is not None:
        _load_state(module, state, spec)
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return BuiltModel(module=module, pretrained=state is not None, labels=spec.labels or labels)


def _build_architecture(spec: ModelSpec) -> nn.Module:
    kind, _, name = spec.architecture.partition(":")
    # Random initialisation is seeded so a model without weights is the same on every start.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_INIT_SEED)
        if kind == "builtin" and name in BUILTIN:
            return BUILTIN[name](spec.num_classes)
        if kind == "torchvision" and name in torchvision.models.list_models(
            module=torchvision.models
        ):
            kwargs = (
                {"aux_logits": False, "init_weights": True}
                if name in ("googlenet", "inception_v3")
                else {}
            )
            try:
                return torchvision.models.get_model(
                    name, weights=None, num_classes=spec.num_classes, **kwargs
                )
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"model {spec.name!r}: field 'architecture': {exc}") from exc
    known = known_architectures()
    nearest = closest(spec.architecture, known, n=3)
    hint = f"did you mean {', '.join(nearest)}?" if nearest else f"e.g. {', '.join(known[:12])}"
    raise ConfigError(
        f"model {spec.name!r}: field 'architecture': unknown architecture {spec.architecture!r}; "
        f"{hint} (use 'builtin:<name>' or 'torchvision:<classification builder>')"
    )


def _read_weights(
    spec: ModelSpec, *, allow_downloads: bool
) -> tuple[dict[str, torch.Tensor] | None, tuple[str, ...] | None]:
    if spec.weights is None:
        return None, None
    if spec.weights.startswith("torchvision:"):
        return _torchvision_weights(spec, allow_downloads=allow_downloads)
    if spec.weights.startswith("builtin:"):
        name = spec.weights.partition(":")[2]
        if name not in BUILTIN_WEIGHTS:
            raise ConfigError(
                f"model {spec.name!r}: field 'weights': unknown built-in weights {spec.weights!r}; "
                f"choose from {', '.join('builtin:' + n for n in BUILTIN_WEIGHTS)}"
            )
        return _file_weights(spec, BUILTIN_WEIGHTS[name]), None
    return _file_weights(spec, Path(spec.weights)), None


def _file_weights(spec: ModelSpec, path: Path) -> dict[str, torch.Tensor]:
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
    return _unwrap_state(state, where)


def _unwrap_state(state: object, where: str) -> dict[str, torch.Tensor]:
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
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _torchvision_weights(
    spec: ModelSpec, *, allow_downloads: bool
) -> tuple[dict[str, torch.Tensor] | None, tuple[str, ...] | None]:
    where = f"model {spec.name!r}: field 'weights' ({spec.weights!r})"
    if spec.weights is None:
        raise ConfigError(f"{where}: no torchvision weights named")
    kind, _, arch = spec.architecture.partition(":")
    if kind != "torchvision":
        raise ConfigError(f"{where}: torchvision weights need a torchvision architecture")
    try:
        enum = torchvision.models.get_model_weights(arch)
        weights = enum[spec.weights.partition(":")[2]]
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{where}: unknown torchvision weights for {arch}") from exc
    categories = tuple(weights.meta.get("categories") or ()) or None
    if categories is not None and len(categories) != spec.num_classes:
        raise ConfigError(
            f"{where}: these weights have {len(categories)} classes, num_classes is "
            f"{spec.num_classes}"
        )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file():
        return _file_weights(spec, cached), categories
    if allow_downloads:
        return weights.get_state_dict(progress=False), categories
    if not spec.weights_required:
        return None, categories
    raise ConfigError(
        f"{where}: not in the local torch cache ({cached}) and downloads are off; "
        "set LAYERSCOPE_ALLOW_DOWNLOADS=true or give a weights file"
    )


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], spec: ModelSpec) -> None:
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
