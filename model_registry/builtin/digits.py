"""The built-in `digits` model: a small CNN trained on scikit-learn's 8x8 digits.

The data ships inside scikit-learn, so training needs no network. Images are turned
into 32x32 grayscale pictures with the same Pillow resize the service applies to
uploads, so what the model saw in training is what it sees when served.
Run `python -m model_registry.builtin.digits` to retrain and rewrite the shipped weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

INPUT_SIZE = (32, 32)
MEAN = (0.5,)
STD = (0.5,)
LABELS = tuple(str(d) for d in range(10))
WEIGHTS_PATH = Path(__file__).with_name("digits.safetensors")
SPLIT_SEED = 0
TEST_FRACTION = 0.25


class DigitsNet(nn.Module):
    """Three conv blocks, global average pooling, one linear layer (so CAM applies)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(64)
        self.relu3 = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def digit_image(pixels: np.ndarray) -> Image.Image:
    """One sklearn digit (8x8, values 0..16) as an 8x8 grayscale PIL image."""
    return Image.fromarray(np.round(pixels * (255.0 / 16.0)).astype(np.uint8), mode="L")


def to_input(image: Image.Image) -> torch.Tensor:
    """The exact preprocessing of the service for this model, for training and evaluation."""
    if image.size != (INPUT_SIZE[1], INPUT_SIZE[0]):
        image = image.resize((INPUT_SIZE[1], INPUT_SIZE[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return (torch.from_numpy(array)[None] - MEAN[0]) / STD[0]


@dataclass(frozen=True)
class DigitsSplit:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_split() -> DigitsSplit:
    """The fixed, stratified train/held-out split of sklearn's digits, preprocessed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.stack([to_input(digit_image(img)) for img in digits.images])
    y = torch.as_tensor(digits.target, dtype=torch.long)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(
        idx, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=digits.target
    )
    return DigitsSplit(x[train_idx], y[train_idx], x[test_idx], y[test_idx])


def train(split: DigitsSplit, *, epochs: int = 25, seed: int = 0) -> DigitsNet:
    """Deterministic training: fixed seed, fixed shuffles, small random shifts as augmentation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1e-2, total_steps=epochs * ((len(split.train_y) + 63) // 64)
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(split.train_y), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            x = _shift(split.train_x[batch], generator)
            loss = loss_fn(model(x), split.train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


def _shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Roll each image by up to 2 pixels in each direction (background is constant)."""
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    from safetensors.torch import save_file

    split = load_split()
    model = train(split)
    acc = accuracy(model, split.test_x, split.test_y)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(WEIGHTS_PATH))
    print(f"held-out accuracy {acc:.4f}; weights written to {WEIGHTS_PATH}")


if __name__ == "__main__":
    main()
