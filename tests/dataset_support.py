"""A small ImageFolder written by the tests and a tiny python-source CNN with one dead channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers import digits_entry, factory_entry, png, toml_table

DEAD_CHANNEL = 2
WIDTH = 4
PER_CLASS = 4
PET_CLASSES = ("cat", "dog-breed", "fish")
MODEL_LABELS = ["Cat", "dog_breed", "fish"]  # matched to the folders ignoring case and _ -

FACTORY = f'''
import torch
from torch import nn


def make():
    """Conv -> ReLU -> pool -> linear; channel {DEAD_CHANNEL} has zero weights and bias -1, so
    it is -1 before the ReLU and 0 after it, for every picture: a dead unit."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = nn.Sequential(
            nn.Conv2d(3, {WIDTH}, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear({WIDTH}, 3),
        )
    with torch.no_grad():
        net[0].weight[{DEAD_CHANNEL}].zero_()
        net[0].bias[{DEAD_CHANNEL}] = -1.0
    return net.eval()
'''


def pictures(seed: int, count: int, *, size: int = 32) -> list[np.ndarray]:
    """Seeded noise pictures, each class a different mean brightness per colour."""
    rng = np.random.default_rng(seed)
    tint = rng.uniform(40, 215, 3)
    return [
        np.clip(rng.normal(tint, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        for _ in range(count)
    ]


def write_folder(root: Path, classes: tuple[str, ...], *, broken: bool) -> Path:
    """PER_CLASS PNGs per class; with `broken`, one more file in the first class that is
    not a picture, and a text file that is ignored by extension."""
    for number, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for index, picture in enumerate(pictures(number, PER_CLASS)):
            (folder / f"{index:02d}.png").write_bytes(png(picture))
    if broken:
        (root / classes[0] / "99-broken.png").write_bytes(b"not a picture at all")
        (root / classes[0] / "notes.txt").write_text("not listed")
    return root


def write_models(folder: Path) -> Path:
    """digits + the python CNN; datasets 'pets' (names map to the CNN's labels, one broken
    file) and 'shapes' (names that map to no label)."""
    (folder / "factory.py").write_text(FACTORY)
    write_folder(folder / "pets", PET_CLASSES, broken=True)
    write_folder(folder / "shapes", ("round", "square"), broken=False)
    config = folder / "models.toml"
    config.write_text(
        digits_entry()
        + factory_entry("deadnet", labels=MODEL_LABELS)
        + toml_table("datasets", name="pets", path="pets")
        + toml_table("datasets", name="shapes", path=folder / "shapes")
    )
    return config
