"""`pt2:<file.pt2>`: a program saved with `torch.export.save`, unflattened.

`torch.export.unflatten` rebuilds the module tree of the exported model, so layers keep
the names the original model's `named_modules()` gave them (`layer1.0.conv1`) and forward
hooks, Grad-CAM and gradients work as on the original. The program carries its weights; a
`weights` state_dict file, when given, replaces them. The program must take one image
batch [N, C, H, W] whose batch size was exported as dynamic (the service batches uploads).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_registry.errors import ConfigError
from model_registry.sources.base import Defaults, FileSource, Weights, resolve_path, target_of
from model_registry.spec import ModelSpec

DYNAMIC_BATCH_HINT = (
    "export it with a dynamic batch size: torch.export.export(model.eval(), (x,), "
    "dynamic_shapes=({0: torch.export.Dim('batch')},))"
)


@dataclass(frozen=True)
class _Signature:
    input_shape: tuple[int, int, int]  # C, H, W of the image batch
    num_classes: int | None  # when the output is [N, classes]


class _Muted(logging.Filter):
    """Keeps the errors torch.export.load logs (with a traceback) before it tries again."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(str(record.exc_info[1]))
        return False


def _load(path: str) -> torch.export.ExportedProgram:
    muted, logger = _Muted(), logging.getLogger("torch.export")
    logger.addFilter(muted)
    try:
        return torch.export.load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a config error
        detail = " ".join((muted.errors[0] if muted.errors else str(exc)).split())[:300]
        raise ValueError(f"{path!r} cannot be read by torch.export.load: {detail}") from exc
    finally:
        logger.removeFilter(muted)


def _dims(node: torch.fx.Node) -> tuple[int | None, ...] | None:
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return None
    return tuple(d if isinstance(d, int) else None for d in value.shape)


def _training_ops(program: torch.export.ExportedProgram) -> list[str]:
    """Ops that run in training mode (batch statistics, dropout): maps would vary per batch."""
    found = []
    for node in program.graph.nodes:
        schema = getattr(node.target, "_schema", None) if node.op == "call_function" else None
        if schema is None:
            continue
        names = [a.name for a in schema.arguments][: len(node.args)]
        named = {**dict(zip(names, node.args, strict=True)), **node.kwargs}
        if named.get("training") is True or named.get("train") is True:
            found.append(str(node.target))
    return found


def _signature_of(program: torch.export.ExportedProgram, path: str) -> _Signature:
    """The image input and the logits the program works with; ValueError when unusable."""
    names = set(program.graph_signature.user_inputs)
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in names]
    dims = _dims(inputs[0]) if len(inputs) == 1 else None
    if dims is None or len(dims) != 4 or None in dims[1:]:
        raise ValueError(
            f"{path!r} must take one image batch [N, C, H, W] with fixed C, H and W "
            f"(it takes {len(inputs)} inputs)"
        )
    if dims[0] is not None:
        raise ValueError(
            f"{path!r} was exported for batches of {dims[0]} only; {DYNAMIC_BATCH_HINT}"
        )
    training = _training_ops(program)
    if training or program.graph_signature.buffers_to_mutate:
        raise ValueError(
            f"{path!r} was exported in training mode ({', '.join(training[:3]) or 'it updates'}"
            " buffers); export the model in eval mode: torch.export.export(model.eval(), ...)"
        )
    (output,) = [n for n in program.graph.nodes if n.op == "output"]
    user = set(program.graph_signature.user_outputs)
    outs = [n for n in output.args[0] if isinstance(n, torch.fx.Node) and n.name in user]
    out_dims = _dims(outs[0]) if len(outs) == 1 else None
    classes = out_dims[1] if out_dims is not None and len(out_dims) == 2 else None
    return _Signature((dims[1], dims[2], dims[3]), classes)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=16)
def _signature(path: str, mtime_ns: int) -> _Signature:
    """Read once per file version at config time: shapes only, no tensors are kept."""
    return _signature_of(_load(path), path)


class Pt2Source(FileSource):
    prefix = "pt2"

    def resolve(self, target: str, base: Path) -> str:
        path = resolve_path(target, base)
        if path.suffix != ".pt2":
            raise ValueError(f"'pt2:{target}' must name a .pt2 file saved by torch.export.save")
        if not path.is_file():
            raise ValueError(f"file {str(path)!r} does not exist")
        _signature(str(path), path.stat().st_mtime_ns)
        return str(path)

    def defaults(self, target: str, weights: str | None, options: Mapping[str, Any]) -> Defaults:
        found = _signature(target, Path(target).stat().st_mtime_ns)
        return Defaults(input_size=found.input_shape[1:], num_classes=found.num_classes)

    def build(self, spec: ModelSpec) -> nn.Module:
        field = f"model {spec.name!r}: field 'architecture' ({spec.architecture!r})"
        path = target_of(spec)
        try:
            program = _load(path)
            _signature_of(program, path)
            return torch.export.unflatten(program)
        except ValueError as exc:
            raise ConfigError(f"{field}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - a program unflatten cannot rebuild
            raise ConfigError(f"{field}: torch.export.unflatten failed: {exc!r}") from exc

    def read_weights(self, spec: ModelSpec, *, allow_downloads: bool) -> Weights:
        """A `weights` file replaces the program's own weights, which are trained ones."""
        if spec.weights is None:
            return Weights(None, pretrained=True)
        return super().read_weights(spec, allow_downloads=allow_downloads)
