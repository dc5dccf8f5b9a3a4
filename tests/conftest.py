"""Session fixtures: real photos, real digits, the app with default and file-configured models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.samples import digit_samples, photos
from service.settings import Settings
from tests.helpers import png, write_resnet_config

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def photo_images() -> dict[str, Image.Image]:
    return photos()


@pytest.fixture(scope="session")
def china_png(photo_images: dict[str, Image.Image]) -> bytes:
    return png(photo_images["china.jpg"])


@pytest.fixture(scope="session")
def flower_png(photo_images: dict[str, Image.Image]) -> bytes:
    return png(photo_images["flower.jpg"])


@pytest.fixture(scope="session")
def digit_pngs() -> list[bytes]:
    return [png(image) for image in digit_samples(10).values()]


@pytest.fixture(scope="session")
def default_client() -> Iterator[TestClient]:
    """The app as `make serve` starts it: digits + resnet18 (random weights without a cache)."""
    with TestClient(create_app(Settings(device="cpu"))) as client:
        yield client


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_resnet_config(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_client(tiny_config: Path) -> Iterator[TestClient]:
    """A seeded resnet18 at 64x64 whose weights come from a config file."""
    with TestClient(create_app(Settings(models=tiny_config, device="cpu"))) as client:
        yield client


@pytest.fixture(scope="session")
def tiny_inputs(photo_images: dict[str, Image.Image]) -> list[bytes]:
    """Two real photos already at 64x64, so preprocessing does not resize them."""
    return [
        png(np.asarray(img.resize((64, 64), Image.Resampling.BILINEAR)))
        for img in photo_images.values()
    ]


@pytest.fixture(scope="session")
def source_models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models file with timm, hf, python and torchvision entries (see tests/source_models)."""
    from tests.source_models import write_source_models

    return write_source_models(tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="session")
def source_models(source_models_file: Path) -> dict[str, object]:
    """Every entry of `source_models_file`, loaded on CPU as the service loads it."""
    from model_registry.config import load_config
    from model_registry.registry import load_model

    cpu = torch.device("cpu")
    return {spec.name: load_model(spec, cpu) for spec in load_config(source_models_file)}
