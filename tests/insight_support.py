"""Helpers shared by the insight and job tests (no tests here)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient
from PIL import Image

from model_registry.builtin import digits
from service.app import create_app
from service.settings import Settings
from tests.helpers import digits_entry, resnet18_entry

# digits (the real built-in model) and a seeded, randomly initialised RGB ResNet-18 at 64x64:
# small enough for CPU tests, deep enough for residual blocks and in-place ReLUs.
MODELS_TOML = digits_entry() + resnet18_entry("tinyres", 10)


def write_models(folder: Path) -> Path:
    path = folder / "models.toml"
    path.write_text(MODELS_TOML, encoding="utf-8")
    return path


def settings(folder: Path, **overrides: object) -> Settings:
    """Test settings: explicit values, never the environment's."""
    values: dict[str, object] = {
        "models": write_models(folder),
        "device": "cpu",
        "torch_threads": 1,
    }
    values.update(overrides)
    return Settings(**values)


def client(folder: Path, **overrides: object) -> TestClient:
    return TestClient(create_app(settings(folder, **overrides)))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def digit_pngs(count: int, *, start: int = 0) -> tuple[list[bytes], list[int]]:
    """scikit-learn digits as 8x8 grayscale PNGs (about 100 bytes each) and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    index = range(start, start + count)
    return [png(digits.digit_image(data.images[i])) for i in index], [
        int(data.target[i]) for i in index
    ]


def photo(name: str = "china.jpg") -> Image.Image:
    from service.samples import photos

    return photos()[name]


def model_state(module: torch.nn.Module) -> dict[str, object]:
    """What must be unchanged after any request: hooks, grads, modes, requires_grad."""
    return {
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in module.modules()
        ),
        "grads": [name for name, p in module.named_parameters() if p.grad is not None],
        "training": [m.training for m in module.modules()],
        "requires_grad": [p.requires_grad for p in module.parameters()],
        "state": {k: v.clone() for k, v in module.state_dict().items()},
    }


def assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    assert after["hooks"] == 0 == before["hooks"]
    assert after["grads"] == []
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    for key, value in before["state"].items():  # type: ignore[union-attr]
        assert torch.equal(value, after["state"][key]), key  # type: ignore[index]


def noise_images(count: int, channels: int, size: tuple[int, int], seed: int = 123) -> np.ndarray:
    """Uniform noise in [0, 1], [N, C, H, W]."""
    generator = np.random.default_rng(seed)
    return generator.random((count, channels, *size), dtype=np.float32)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch.set_num_threads(1) for a block (see `settings`), restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
