"""Model sources: one object per `architecture` prefix, looked up here and nowhere else."""

from __future__ import annotations

from model_registry.sources.base import Defaults, ModelSource, Weights
from model_registry.sources.builtin_source import BuiltinSource
from model_registry.sources.hf_source import HFSource
from model_registry.sources.pt2_source import Pt2Source
from model_registry.sources.python_source import PythonSource
from model_registry.sources.timm_source import TimmSource
from model_registry.sources.torchvision_source import TorchvisionSource

SOURCES: dict[str, ModelSource] = {
    source.prefix: source
    for source in (BuiltinSource(), TorchvisionSource(), TimmSource(), HFSource(), PythonSource())
}
SOURCES[Pt2Source.prefix] = Pt2Source()


def source_for(architecture: str) -> ModelSource:
    """The source of `architecture` ('<prefix>:<target>'); ValueError naming the prefixes."""
    prefix, sep, target = architecture.partition(":")
    if not sep or not target or prefix not in SOURCES:
        raise ValueError(
            f"unknown architecture {architecture!r}; use one of "
            f"{', '.join(p + ':<...>' for p in SOURCES)} (e.g. 'torchvision:resnet18', "
            "'timm:vit_small_patch16_224', 'hf:./my-vit', 'python:models.py:make_model')"
        )
    return SOURCES[prefix]


__all__ = ["SOURCES", "Defaults", "ModelSource", "Weights", "source_for"]
