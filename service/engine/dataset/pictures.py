"""The pictures a dataset job reads: a seeded sample of the indices, and one picture
decoded, or skipped with a warning when it cannot be (shared by the dataset jobs)."""

from __future__ import annotations

import logging

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
