"""Model specs, loading, layer catalogs and the built-in models (torch only, no web framework)."""

from model_registry.catalog import LayerCatalog, LayerInfo
from model_registry.config import default_specs, load_config
from model_registry.registry import LoadedModel, ModelRegistry, load_model, resolve_device
from model_registry.spec import ModelSpec

__all__ = [
    "LayerCatalog",
    "LayerInfo",
    "LoadedModel",
    "ModelRegistry",
    "ModelSpec",
    "default_specs",
    "load_config",
    "load_model",
    "resolve_device",
]
