"""Sample pictures for trying the API: scikit-learn's two photos and a few digits."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

from model_registry.builtin import digits


def photos() -> dict[str, Image.Image]:
    """china.jpg and flower.jpg from `sklearn.datasets.load_sample_images()` (427x640 RGB)."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    return {
        Path(name).name: Image.fromarray(img)
        for name, img in zip(bunch.filenames, bunch.images, strict=True)
    }


def digit_samples(count: int = 10, start: int = 0) -> dict[str, Image.Image]:
    """sklearn digits `start` to `start + count` as 32x32 grayscale PNG-ready images, named
    by label."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = {}
    for index in range(start, start + count):
        picture = digits.digit_image(data.images[index]).resize(
            (digits.INPUT_SIZE[1], digits.INPUT_SIZE[0]), Image.Resampling.BILINEAR
        )
        images[f"digit-{index}-label{int(data.target[index])}.png"] = picture
    return images


def write_samples(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in {**photos(), **digit_samples()}.items():
        path = folder / name
        image.save(path, quality=95) if name.endswith(".jpg") else image.save(path)
        written.append(path)
    return written


@dataclass(frozen=True)
class EncodedSample:
    """A sample picture as file bytes, for the portal: `channels` is 1 (digit) or 3 (photo)."""

    name: str
    data: bytes
    media_type: str
    channels: int


REFERENCE_DIGITS = 40  # after the 10 samples: about four more of each digit


@cache
def encoded_references() -> dict[str, EncodedSample]:
    """Digits the embedding places beside the samples, so each class has several points."""
    return _encode(digit_samples(REFERENCE_DIGITS, start=10))


@cache
def encoded_samples() -> dict[str, EncodedSample]:
    """Every sample, encoded once per process: photos as JPEG, digits as PNG, photos first."""
    return _encode({**photos(), **digit_samples()})


def _encode(images: dict[str, Image.Image]) -> dict[str, EncodedSample]:
    samples = {}
    for name, image in images.items():
        buffer = io.BytesIO()
        if name.endswith(".jpg"):
            image.save(buffer, format="JPEG", quality=90)
            samples[name] = EncodedSample(name, buffer.getvalue(), "image/jpeg", 3)
        else:
            image.save(buffer, format="PNG")
            samples[name] = EncodedSample(name, buffer.getvalue(), "image/png", 1)
    return samples
