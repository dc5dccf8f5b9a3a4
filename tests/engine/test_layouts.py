"""Transformer outputs read as spatial maps: the layout rules, the catalog and feature maps."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from model_registry.layout import MapLayout, is_grid, map_layout, to_maps
from model_registry.registry import LoadedModel
from model_registry.spec import ModelSpec
from service.engine.capture import capture
from service.engine.feature_maps import compute_feature_maps, plan_feature_maps


def blank_inputs() -> np.ndarray:
    return np.zeros((1, 32, 32, 3), dtype=np.uint8)


class Case(NamedTuple):
    shape: tuple[int, ...] | None
    input_size: tuple[int, int] | None
    expected: MapLayout | None


CASES = {
    "cnn": Case((64, 56, 56), (224, 224), MapLayout("chw", 64, 56, 56)),
    "cnn-no-input-size": Case((64, 56, 56), None, MapLayout("chw", 64, 56, 56)),
    "cnn-odd-sizes": Case((64, 147, 147), (299, 299), MapLayout("chw", 64, 147, 147)),
    "digits": Case((16, 32, 32), (32, 32), MapLayout("chw", 16, 32, 32)),
    "swin-channels-last": Case((56, 56, 96), (224, 224), MapLayout("hwc", 96, 56, 56)),
    "swin-last-stage": Case((7, 7, 768), (224, 224), MapLayout("hwc", 768, 7, 7)),
    "ambiguous-stays-channels-first": Case((56, 56, 56), (224, 224), MapLayout("chw", 56, 56, 56)),
    "vit-b-16": Case((197, 768), (224, 224), MapLayout("tokens", 768, 14, 14, 1)),
    "vit-no-class-token": Case((196, 768), (224, 224), MapLayout("tokens", 768, 14, 14, 0)),
    "vit-registers": Case((201, 768), (224, 224), MapLayout("tokens", 768, 14, 14, 5)),
    "vit-rectangular": Case((1 + 8 * 16, 64), (128, 256), MapLayout("tokens", 64, 8, 16, 1)),
    "tokens-without-input-size": Case((197, 768), None, None),
    "vector": Case((1000,), (224, 224), MapLayout("vector", 1000, 1, 1)),
    "no-tensor": Case(None, (224, 224), None),
    "4d": Case((2, 3, 4, 5), (224, 224), None),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_map_layout(case: Case) -> None:
    assert map_layout(case.shape, case.input_size) == case.expected


def test_is_grid_accepts_rounding_either_way() -> None:
    assert is_grid(112, 112, (224, 224))
    assert is_grid(8, 10, (225, 300))  # 225/28 rounds down, 300/28 rounds up
    assert not is_grid(56, 96, (224, 224))


def test_to_maps_drops_class_token_and_keeps_row_major_patches() -> None:
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(
        2, 5, 3
    )  # 1 class token + 2x2 grid
    maps = to_maps(tokens, MapLayout("tokens", 3, 2, 2, 1))
    assert maps.shape == (2, 3, 2, 2)
    assert torch.equal(maps[1, :, 0, 1], tokens[1, 2])  # patch (0, 1) is token 1 + 1
    assert torch.equal(maps[0, 2, 1, 0], tokens[0, 3, 2])
    channels_last = torch.randn(2, 4, 6, 3)
    assert torch.equal(
        to_maps(channels_last, MapLayout("hwc", 3, 4, 6)), channels_last.permute(0, 3, 1, 2)
    )


def map_shape(
    shape: tuple[int, ...], input_size: tuple[int, int] | None = None
) -> tuple[int, int, int] | None:
    layout = map_layout(shape, input_size)
    return layout.shape if layout is not None else None


def test_feature_maps_map_shape_keeps_cnn_behaviour() -> None:
    assert map_shape((64, 7, 7)) == (64, 7, 7)
    assert map_shape((10,)) == (10, 1, 1)
    assert map_shape((197, 768)) is None
    assert map_shape((197, 768), (224, 224)) == (768, 14, 14)


def test_tiny_transformer_catalogs_show_spatial_shapes(
    tiny_vit: LoadedModel, tiny_swin: LoadedModel
) -> None:
    vit = tiny_vit.catalog.get("encoder.layers.encoder_layer_1.ln_1")
    assert vit.output_shape == (17, 32) and vit.spatial_shape == (32, 4, 4) and vit.spatial
    swin = tiny_swin.catalog.get("features.1")
    assert swin.output_shape == (8, 8, 16) and swin.spatial_shape == (16, 8, 8) and swin.spatial
    assert tiny_swin.catalog.get("permute").spatial_shape == (32, 4, 4)
    assert tiny_vit.catalog.get("heads.head").spatial_shape == (10, 1, 1)
    assert not tiny_vit.catalog.get("heads.head").spatial


@pytest.mark.parametrize("name", ["tiny_vit", "tiny_swin"])
def test_catalog_spatial_shape_matches_real_forward(
    name: str, request: pytest.FixtureRequest
) -> None:
    model: LoadedModel = request.getfixturevalue(name)
    batch = torch.randn(2, 3, *model.spec.input_size)
    layers = {info.name: info.calls for info in model.catalog.spatial_layers()}
    outputs = capture(model.module, batch, layers, stop_early=False)
    for layer, output in outputs.items():
        info = model.catalog.get(layer)
        assert tuple(to_maps(output, info.map_layout).shape) == (2, *info.spatial_shape), layer


@pytest.mark.parametrize(
    "arch, layer, shape",
    [
        ("vit_b_16", "encoder.layers.encoder_layer_11", (768, 14, 14)),
        ("swin_t", "features.7", (768, 7, 7)),
    ],
)
def test_torchvision_transformers_catalog(
    arch: str, layer: str, shape: tuple[int, int, int]
) -> None:
    from model_registry.registry import load_model

    spec = ModelSpec(
        name=arch,
        architecture=f"torchvision:{arch}",
        weights=None,
        input_size=(224, 224),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        num_classes=1000,
    )
    model = load_model(spec, torch.device("cpu"))
    assert model.catalog.get(layer).spatial_shape == shape


def test_feature_maps_of_vit_tokens_are_the_patch_grid(tiny_vit: LoadedModel) -> None:
    layer = "encoder.layers.encoder_layer_0"
    plan = plan_feature_maps(tiny_vit, layers=[layer], channels="all", reduce="none")
    batch = torch.randn(1, 3, 32, 32)
    result = compute_feature_maps(tiny_vit, batch, plan, inputs=blank_inputs())
    tokens = capture(tiny_vit.module, batch, {layer: 1})[layer]
    expected = tokens[:, 1:, :].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    assert result.layers[0].values.shape == (1, 32, 4, 4)
    assert torch.allclose(torch.from_numpy(result.layers[0].values), expected)


def test_feature_maps_of_swin_are_channels_first(tiny_swin: LoadedModel) -> None:
    plan = plan_feature_maps(tiny_swin, layers=["features.1"], channels="first:4", reduce="none")
    batch = torch.randn(1, 3, 32, 32)
    result = compute_feature_maps(tiny_swin, batch, plan, inputs=blank_inputs())
    raw = capture(tiny_swin.module, batch, {"features.1": 1})["features.1"]
    assert torch.allclose(torch.from_numpy(result.layers[0].values), raw.permute(0, 3, 1, 2)[:, :4])
