"""The resize filter follows the weights: the pixels equal each library's own eval transform."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from model_registry.config import load_config
from model_registry.errors import ConfigError
from model_registry.spec import ModelSpec
from service.engine.images import model_pixels, to_batch
from tests.source_models import write_hf_vit

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from sklearn.datasets import load_sample_images

    return Image.fromarray(load_sample_images().images[1])  # flower.jpg, 640 x 427


def _spec(folder: Path, body: str) -> ModelSpec:
    path = folder / "models.toml"
    path.write_text(body)
    return load_config(path)[0]


def _ours(photo: Image.Image, spec: ModelSpec) -> torch.Tensor:
    return to_batch(model_pixels([photo], spec), spec, CPU)[0]


def _torchvision_swin() -> object:
    import torchvision

    return torchvision.models.Swin_T_Weights.IMAGENET1K_V1.transforms()


def _timm_efficientnet() -> object:
    import timm
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model("efficientnet_b0", pretrained=False)
    config = resolve_data_config({"input_size": (3, 96, 96)}, model=model)
    assert config["interpolation"] == "bicubic"
    return create_transform(**config)


# torchvision's Swin weights and timm's EfficientNet are evaluated after a bicubic resize.
BICUBIC_ENTRIES = {
    "swin": ('architecture = "torchvision:swin_t"\nweights = "torchvision:IMAGENET1K_V1"', 224),
    "eff": ('architecture = "timm:efficientnet_b0"\noptions = { img_size = 96 }', 96),
}


@pytest.mark.parametrize(
    ("name", "reference"), [("swin", _torchvision_swin), ("eff", _timm_efficientnet)]
)
def test_bicubic_weights_match_their_librarys_own_eval_transform(
    tmp_path: Path, photo: Image.Image, name: str, reference: Callable[[], Any]
) -> None:
    entry, side = BICUBIC_ENTRIES[name]
    spec = _spec(tmp_path, f'[[models]]\nname = "{name}"\n{entry}\n')
    assert (spec.interpolation, spec.resize, spec.input_size) == ("bicubic", "crop", (side, side))
    torch.testing.assert_close(_ours(photo, spec), reference()(photo), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("resample", "name"), [(0, "nearest"), (2, "bilinear"), (3, "bicubic")])
def test_hf_processor_resample_is_followed(
    tmp_path: Path, photo: Image.Image, resample: int, name: str
) -> None:
    from transformers import AutoImageProcessor

    folder = write_hf_vit(tmp_path / "vit")
    processor_file = folder / "preprocessor_config.json"
    saved = json.loads(processor_file.read_text())
    processor_file.write_text(json.dumps({**saved, "resample": resample}))
    spec = _spec(tmp_path, '[[models]]\nname = "vit"\narchitecture = "hf:vit"\n')
    assert spec.interpolation == name
    processor = AutoImageProcessor.from_pretrained(str(folder))
    reference = processor(images=photo, return_tensors="pt")["pixel_values"][0]
    std = torch.tensor(spec.std).view(-1, 1, 1)
    levels = ((_ours(photo, spec) - reference) * std * 255).abs()  # in 8-bit levels
    assert levels.max() <= 1.0 + 1e-3  # transformers' own resize rounds a rare pixel apart
    assert (levels > 0.5).float().mean() < 0.005


def test_models_file_overrides_the_filter_and_rejects_unknown_ones(tmp_path: Path) -> None:
    base = (
        '[[models]]\nname = "r"\narchitecture = "torchvision:resnet18"\nnum_classes = 3\n'
        "input_size = [32, 32]\nmean = [0.5]\nstd = [0.5]\n"
    )
    spec = _spec(tmp_path, base + 'interpolation = "nearest"\n')
    assert spec.interpolation == "nearest"
    assert _spec(tmp_path, base).interpolation == "bilinear"
    with pytest.raises(ConfigError, match="interpolation") as info:
        _spec(tmp_path, base + 'interpolation = "cubic"\n')
    assert "bicubic" in str(info.value)


def test_nearest_filter_repeats_pixels(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        '[[models]]\nname = "r"\narchitecture = "torchvision:resnet18"\nnum_classes = 3\n'
        'input_size = [8, 8]\nmean = [0, 0, 0]\nstd = [1, 1, 1]\ninterpolation = "nearest"\n',
    )
    small = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    pixels = model_pixels([Image.fromarray(small)], spec)[0]
    assert np.array_equal(pixels, small.repeat(2, axis=0).repeat(2, axis=1))
