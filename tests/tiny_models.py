"""Helpers of the attribution tests: wrapping test-built modules, batches, correlation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from model_registry.catalog import build_catalog
from model_registry.registry import LoadedModel
from model_registry.spec import ModelSpec
from tests.helpers import IMAGENET_MEAN, IMAGENET_STD, digits_entry, resnet18_entry

CPU = torch.device("cpu")


def loaded(
    name: str,
    module: nn.Module,
    input_size: tuple[int, int],
    num_classes: int,
    *,
    gray: bool = False,
) -> LoadedModel:
    """A LoadedModel around a module built in a test, frozen and in eval mode (as the registry)."""
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    spec = ModelSpec(
        name=name,
        architecture=f"test:{name}",
        weights=None,
        input_size=input_size,
        mean=(0.5,) if gray else IMAGENET_MEAN,
        std=(0.5,) if gray else IMAGENET_STD,
        num_classes=num_classes,
    )
    catalog = build_catalog(name, module, (spec.in_channels, *input_size), CPU)
    return LoadedModel(spec, module, CPU, catalog, False, None)


def seeded(builder, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder()


class FunctionalReluNet(nn.Module):
    """ReLUs as nn.ReLU, nn.ReLU(inplace=True), F.relu, Tensor.relu_ and torch.relu, by `style`."""

    def __init__(self, style: str = "module") -> None:
        super().__init__()
        self.style = style
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 5)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU(inplace=True)
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.style == "module":
            x = self.relu1(self.conv1(x))
            x = self.relu2(self.conv2(x))
            x = self.relu3(self.conv3(x))
        else:
            x = F.relu(self.conv1(x))
            x = self.conv2(x)
            x.relu_()
            x = torch.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


def model_batch(model: LoadedModel, images: list[Image.Image]) -> torch.Tensor:
    from service.engine.images import preprocess

    return preprocess(images, model.spec, model.device)


def pearson(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def second_class(model: LoadedModel, batch: torch.Tensor) -> int:
    """A target that is not the top-1 class of the first image: its second-ranked class."""
    with torch.inference_mode():
        return int(model.module(batch[:1]).topk(2, dim=1).indices[0, 1])


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def write_models_toml(folder: Path) -> Path:
    """digits (built in) and a 64 x 64 resnet18 with seeded random weights."""
    path = folder / "models.toml"
    path.write_text(digits_entry(DIGIT_NAMES) + resnet18_entry("resnet18", 1000), encoding="utf-8")
    return path
