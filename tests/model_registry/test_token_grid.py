"""Prefix tokens and patch grid as the model states them, before any guess from lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_registry.catalog import build_catalog
from model_registry.layout import map_layout, to_maps
from model_registry.registry import LoadedModel
from model_registry.token_grid import TokenGrid, token_grid

TINY = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}


def test_register_tokens_are_not_mistaken_for_a_grid() -> None:
    """21 tokens at 32 x 32: 1 class + 4 registers + 4 x 4 patches, not 1 + 4 x 5."""
    import timm

    torch.manual_seed(0)
    module = timm.create_model("vit_small_patch14_reg4_dinov2", num_classes=3, **TINY).eval()
    assert token_grid(module) == TokenGrid(5, 4, 4)
    assert map_layout((21, 32), (32, 32)).shape == (32, 4, 5)  # the guess alone is wrong
    catalog = build_catalog("reg", module, (3, 32, 32), torch.device("cpu"))
    layout = catalog.get("blocks.1.norm1").map_layout
    assert layout.shape == (32, 4, 4) and layout.extra_tokens == 5
    x = torch.randn(1, 3, 32, 32)
    seen = []
    handle = module.blocks[1].norm1.register_forward_hook(lambda _m, _i, o: seen.append(o))
    with torch.no_grad():
        module(x)
    handle.remove()
    expected = seen[0][:, 5:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    assert torch.equal(to_maps(seen[0], layout), expected)


@pytest.mark.parametrize(
    "name, grid", [("tvit", (1, 4, 4)), ("tdeit", (2, 4, 4)), ("hvit", (1, 4, 4))]
)
def test_timm_and_hf_models_state_their_grid(
    name: str, grid: tuple[int, int, int], source_models: dict[str, LoadedModel]
) -> None:
    assert token_grid(source_models[name].module) == TokenGrid(*grid)


@pytest.mark.parametrize("name", ["tcnn", "py", "tv", "tswin"])
def test_other_models_state_none(name: str, source_models: dict[str, LoadedModel]) -> None:
    found = token_grid(source_models[name].module)
    # timm's Swin has a patch grid but no prefix tokens: not a ViT sequence.
    assert found is None, found
    assert np.isfinite(source_models[name].catalog.last_spatial_layer().order)
