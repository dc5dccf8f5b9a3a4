"""The pictures a dataset job reads: a seeded sample of the indices, and the pictures
decoded batch by batch, each skipped with a warning when it cannot be (shared by the
dataset jobs)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from model_registry.datasets import Dataset
from model_registry.errors import ClientError
from service.engine.images import decode_image

log = logging.getLogger("layerscope")


def sample_indices(size: int, count: int, seed: int) -> tuple[int, ...]:
    """`count` of the indices 0..size-1 drawn without replacement with `seed`, ascending;
    all of them, in order, when `count` >= `size`."""
    if count >= size:
        return tuple(range(size))
    rng = np.random.default_rng(seed)
    return tuple(int(i) for i in np.sort(rng.choice(size, count, replace=False)))


def read_picture(dataset: Dataset, index: int, max_pixels: int) -> Image.Image | None:
    """Picture `index` decoded, or None (logged) when its file is unreadable or no image."""
    try:
        return decode_image(dataset.read(index), max_pixels=max_pixels, index=index)
    except (OSError, ClientError):
        log.warning("dataset %s: skipped %s", dataset.name, dataset.describe(index))
        return None


@dataclass(frozen=True)
class PictureBatch:
    """One batch: `images` decoded, `indices` their dataset indices (unreadable pictures
    left out, so both may be empty); `start` and `end` bound it in the job's index list."""

    start: int
    end: int
    images: list[Image.Image]
    indices: list[int]


def picture_batches(
    dataset: Dataset, indices: Sequence[int], batch_size: int, max_pixels: int
) -> Iterator[PictureBatch]:
    """`indices` read `batch_size` at a time, every batch yielded (also an empty one), so a
    job can report `end` of `len(indices)` after each."""
    for start in range(0, len(indices), batch_size):
        part = indices[start : start + batch_size]
        pictures = [(index, read_picture(dataset, index, max_pixels)) for index in part]
        kept = [(index, picture) for index, picture in pictures if picture is not None]
        yield PictureBatch(
            start,
            start + len(part),
            [picture for _, picture in kept],
            [index for index, _ in kept],
        )
