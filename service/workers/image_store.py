"""Uploads kept under a content-addressed id: a client uploads once and explores many views."""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from model_registry.errors import NotFound
from service.workers.lru import BoundedLRU

IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")


def content_id(data: bytes) -> str:
    """The SHA-256 of the bytes: the same picture always gets the same id."""
    return hashlib.sha256(data).hexdigest()


def not_found(image_id: str) -> NotFound:
    """Today's 404 for an id never stored, evicted, or expired."""
    return NotFound(
        f"image_id '{image_id[:80]}' is unknown or was evicted; upload it again with POST "
        "/v1/images",
        field="image_id",
    )


class Images(Protocol):
    """Where uploads live: this process (`ImageStore`) or Redis (`RedisImageStore`)."""

    def put(self, data: bytes) -> str:
        """Store the bytes; returns their content id."""
        ...

    def get(self, image_id: str) -> bytes:
        """The stored bytes; raises `NotFound` (404) for an unknown or evicted id."""
        ...


class ImageStore:
    """Per-process, bounded (count and bytes, least recently used evicted first)."""

    def __init__(self, *, max_images: int, max_bytes: int) -> None:
        self._images: BoundedLRU[bytes] = BoundedLRU(max_items=max_images, max_bytes=max_bytes)

    def put(self, data: bytes) -> str:
        image_id = content_id(data)
        self._images.put(image_id, data, len(data))
        return image_id

    def get(self, image_id: str) -> bytes:
        data = self._images.get(image_id) if IMAGE_ID.match(image_id) else None
        if data is None:
            raise not_found(image_id)
        return data
