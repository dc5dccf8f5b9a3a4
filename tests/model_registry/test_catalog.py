"""The layer catalog equals what a real forward pass produces."""

from __future__ import annotations

import torch
import torchvision

from model_registry.catalog import build_catalog
from model_registry.config import default_specs
from model_registry.registry import load_model


def _reference_shapes(module: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:])))
        for n, m in module.named_modules()
        if n
    ]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def test_catalog_matches_forward_pass_for_resnet18() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    catalog = build_catalog("r", model, (3, 96, 96), torch.device("cpu"))
    expected = _reference_shapes(model, torch.randn(2, 3, 96, 96))
    assert [layer.name for layer in catalog] == [n for n, _ in model.named_modules() if n]
    for layer in catalog:
        assert layer.output_shape == expected[layer.name], layer.name
        assert layer.params == sum(p.numel() for p in model.get_submodule(layer.name).parameters())
        assert layer.type == type(model.get_submodule(layer.name)).__name__
    assert catalog.get("layer3").output_shape == (256, 6, 6)
    assert catalog.get("layer1.0.relu").calls == 2  # BasicBlock reuses its ReLU
    assert catalog.last_spatial_layer().name == "layer4"  # completes last: the deepest map
    assert not any(m._forward_hooks for m in model.modules())


def test_digits_catalog_through_registry() -> None:
    loaded = load_model(default_specs()[0], torch.device("cpu"))
    shapes = {layer.name: layer.output_shape for layer in loaded.catalog}
    assert shapes["conv1"] == (32, 32, 32)
    assert shapes["pool2"] == (64, 8, 8)
    assert shapes["conv3"] == (128, 8, 8)
    assert shapes["fc"] == (10,)
    assert loaded.catalog.get("fc").params == 128 * 10 + 10
