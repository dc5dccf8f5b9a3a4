"""Session fixtures shared by every test folder: real photos and digits, tiny seeded models
(CNNs, a ViT, a Swin, ReLU variants), and the app with default and file-configured models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from torchvision.models import VisionTransformer
from torchvision.models.swin_transformer import SwinTransformer

from model_registry.config import default_specs
from model_registry.registry import LoadedModel, load_model
from model_registry.spec import ModelSpec
from service.app import create_app
from service.samples import digit_samples, photos
from service.settings import Settings
from tests.helpers import png, write_resnet_config
from tests.tiny_models import (
    CPU,
    IMAGENET_MEAN,
    IMAGENET_STD,
    FunctionalReluNet,
    loaded,
    seeded,
    write_models_toml,
)

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
def photo() -> Image.Image:
    """china.jpg from scikit-learn (427 x 640 RGB)."""
    from sklearn.datasets import load_sample_images

    return Image.fromarray(load_sample_images().images[0])


@pytest.fixture(scope="session")
def photo_png(photo: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    photo.resize((128, 86)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def resnet() -> LoadedModel:
    """torchvision resnet18, seeded random weights, fed 64 x 64."""
    spec = ModelSpec(
        name="resnet18",
        architecture="torchvision:resnet18",
        weights=None,
        input_size=(64, 64),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        num_classes=1000,
    )
    return load_model(spec, CPU)


@pytest.fixture(scope="session")
def digits() -> LoadedModel:
    return load_model(default_specs()[0], CPU)


@pytest.fixture(scope="session")
def tiny_vit() -> LoadedModel:
    shape = {"num_layers": 2, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}
    module = seeded(lambda: VisionTransformer(image_size=32, patch_size=8, num_classes=10, **shape))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(1)  # torchvision starts the head at zero, which makes every logit 0
        torch.nn.init.normal_(module.heads.head.weight, std=0.5)
    return loaded("tiny-vit", module, (32, 32), 10)


@pytest.fixture(scope="session")
def tiny_swin() -> LoadedModel:
    module = seeded(
        lambda: SwinTransformer(
            patch_size=[4, 4],
            embed_dim=16,
            depths=[1, 1],
            num_heads=[1, 2],
            window_size=[2, 2],
            num_classes=10,
        )
    )
    return loaded("tiny-swin", module, (32, 32), 10)


@pytest.fixture(scope="session")
def relu_nets() -> dict[str, LoadedModel]:
    """The same weights with module ReLUs (one in-place) and with functional ones."""
    module = seeded(lambda: FunctionalReluNet("module"), seed=3)
    functional = FunctionalReluNet("functional")
    functional.load_state_dict(module.state_dict())
    return {
        "module": loaded("relu-module", module, (24, 24), 5),
        "functional": loaded("relu-functional", functional, (24, 24), 5),
    }


@pytest.fixture(scope="session")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The real app (lifespan run) serving digits and a 64 x 64 resnet18."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    path = write_models_toml(tmp_path_factory.mktemp("models"))
    with TestClient(create_app(Settings(models=path, device="cpu", worker_threads=2))) as client:
        yield client


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


@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    """A real redis-server on a loopback port (skips without one, fails under `make test`)."""
    from tests.redis_support import RedisServer

    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dense_models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models file with a segmentation (`seg`) and a detection (`det`) model."""
    from tests.dense_models import write_dense_config

    return write_dense_config(tmp_path_factory.mktemp("dense"))


@pytest.fixture(scope="session")
def dense_models(dense_models_file: Path) -> dict[str, LoadedModel]:
    """`seg` and `det` loaded on CPU as the service loads them."""
    from model_registry.config import load_config

    return {spec.name: load_model(spec, CPU) for spec in load_config(dense_models_file)}


@pytest.fixture(scope="session")
def dense_client(dense_models_file: Path) -> Iterator[TestClient]:
    """The app serving `seg` and `det`."""
    with TestClient(create_app(Settings(models=dense_models_file, device="cpu"))) as client:
        yield client


@pytest.fixture(scope="session")
def hf_dense_models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models file with Hugging Face segmentation and detection directories
    (`hseg`, `hdet`, `hcdet`, `hyolos`; see tests/hf_dense_models.py)."""
    from tests.hf_dense_models import write_hf_dense_config

    return write_hf_dense_config(tmp_path_factory.mktemp("hf-dense"))


@pytest.fixture(scope="session")
def hf_dense_client(hf_dense_models_file: Path) -> Iterator[TestClient]:
    """The app serving the Hugging Face segmentation and detection models."""
    with TestClient(create_app(Settings(models=hf_dense_models_file, device="cpu"))) as client:
        yield client
