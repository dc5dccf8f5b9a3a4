"""`python:<file.py or dotted.module>:<callable>`: the operator's own nn.Module.

The callable is called with no arguments, or with the entry's `options` table as keyword
arguments, and must return an `nn.Module`. This runs the operator's code: a models file is
as trusted as code, and nothing reachable over HTTP can name a file or a module.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from model_registry.errors import ConfigError
from model_registry.sources.base import Defaults, FileSource, resolve_path, target_of
from model_registry.sources.options import check_options, parameters, takes_var_keywords
from model_registry.spec import ModelSpec


def _split(target: str) -> tuple[str, str]:
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise ValueError(
            f"'python:{target}' must be 'python:<file.py or dotted.module>:<callable>'"
        )
    return where, name


class PythonSource(FileSource):
    prefix = "python"

    def resolve(self, target: str, base: Path) -> str:
        where, name = _split(target)
        if where.endswith(".py"):
            path = resolve_path(where, base)
            if not path.is_file():
                raise ValueError(f"file {str(path)!r} does not exist")
            return f"{path}:{name}"
        try:
            found = importlib.util.find_spec(where)
        except (ImportError, ValueError) as exc:
            raise ValueError(f"module {where!r} cannot be found: {exc}") from exc
        if found is None:
            raise ValueError(f"module {where!r} cannot be found on the Python path")
        return target

    def defaults(self, target: str, weights: str | None, options: Mapping[str, Any]) -> Defaults:
        return Defaults()

    def build(self, spec: ModelSpec) -> nn.Module:
        where, name = _split(target_of(spec))
        field = f"model {spec.name!r}: field 'architecture' ({spec.architecture!r})"
        try:
            module = _import(where)
        except Exception as exc:  # noqa: BLE001 - any failure of the operator's code
            raise ConfigError(f"{field}: importing {where!r} failed: {exc!r}") from exc
        factory = getattr(module, name, None)
        if not callable(factory):
            public = sorted(n for n in vars(module) if callable(getattr(module, n)) and n[0] != "_")
            raise ConfigError(
                f"{field}: {where!r} has no callable {name!r} (callables there: "
                f"{', '.join(public[:10]) or 'none'})"
            )
        options = dict(spec.options or {})
        if not takes_var_keywords(factory):  # names and annotated types checked first
            try:
                check_options(options, parameters([factory]), builder=f"{name}()")
            except ValueError as exc:
                raise ConfigError(f"model {spec.name!r}: field 'options': {exc}") from exc
        try:
            built = factory(**options)
        except Exception as exc:  # noqa: BLE001 - any failure of the operator's code
            field_name = "options" if options else "architecture"
            takes = ""
            if isinstance(exc, TypeError) and "argument" in str(exc):
                takes = f" (it takes: {', '.join(parameters([factory])) or 'no options'})"
            raise ConfigError(
                f"model {spec.name!r}: field '{field_name}': {name}(**{options}) failed: "
                f"{exc!r}{takes}"
            ) from exc
        if not isinstance(built, nn.Module):
            raise ConfigError(
                f"{field}: {name}() returned {type(built).__name__}, not a torch.nn.Module"
            )
        return built


def _import(where: str) -> ModuleType:
    if not where.endswith(".py"):
        return importlib.import_module(where)
    path = Path(where)
    # A private name per file, so two files called model.py do not replace each other.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"layerscope_models.{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {where!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
