"""Uploads kept under an id only their tenant can recompute: a client uploads once and
explores many views; another tenant's ids answer 404, as unknown ones do."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from typing import Protocol

from model_registry.errors import NotFound, PayloadTooLarge
from service.workers.tenancy import ImageIds, Tenant

IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")


def content_id(data: bytes) -> str:
    """The SHA-256 of the bytes: a key for this process's own caches, never shown to clients."""
    return hashlib.sha256(data).hexdigest()


def not_found(image_id: str) -> NotFound:
    """The 404 for an id never stored, evicted, expired, or another tenant's."""
    return NotFound(
        f"image_id '{image_id[:80]}' is unknown or was evicted; upload it again with POST "
        "/v1/images",
        field="image_id",
    )


def over_tenant_limit(size: int, limit: int) -> PayloadTooLarge:
    """The 413 for one picture larger than a tenant may keep."""
    return PayloadTooLarge(
        f"image: {size} bytes, more than the {limit} bytes of uploads a tenant may keep "
        "(LAYERSCOPE_TENANT_MAX_IMAGE_BYTES)",
        field="image",
        tenant_max_image_bytes=limit,
    )


def over_store_limit(size: int, limit: int) -> PayloadTooLarge:
    """The 413 for one picture larger than the whole store."""
    return PayloadTooLarge(
        f"image: {size} bytes, more than the {limit} bytes the image store keeps "
        "(LAYERSCOPE_IMAGE_STORE_MAX_BYTES)",
        field="image",
        image_store_max_bytes=limit,
    )


class Images(Protocol):
    """Where uploads live: this process (`ImageStore`) or Redis (`RedisImageStore`)."""

    def put(self, data: bytes, tenant: Tenant) -> str:
        """Store the bytes for `tenant`; returns their id (the same for the same bytes)."""
        ...

    def get(self, image_id: str, tenant: Tenant) -> bytes:
        """The stored bytes; raises `NotFound` (404) for an unknown, evicted or unseen id."""
        ...


class ImageStore:
    """Per-process, bounded (count and bytes, least recently used evicted first); a tenant
    over its own byte limit loses its own least recently used uploads, not another's."""

    def __init__(
        self,
        *,
        max_images: int,
        max_bytes: int,
        tenant_max_bytes: int | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.max_images, self.max_bytes = max_images, max_bytes
        self.tenant_max_bytes = tenant_max_bytes
        self._ids = ImageIds(secret or os.urandom(32))
        self._entries: OrderedDict[str, tuple[str, bytes]] = OrderedDict()  # id -> owner, data
        self._bytes = 0
        self._owned: dict[str, int] = {}  # tenant -> bytes kept
        self._lock = threading.Lock()

    def _drop(self, image_id: str) -> None:
        owner, data = self._entries.pop(image_id)
        self._bytes -= len(data)
        self._owned[owner] -= len(data)
        if not self._owned[owner]:
            del self._owned[owner]

    def put(self, data: bytes, tenant: Tenant) -> str:
        size, limit = len(data), self.tenant_max_bytes
        if limit is not None and size > limit:
            raise over_tenant_limit(size, limit)
        if size > self.max_bytes:
            raise over_store_limit(size, self.max_bytes)
        image_id = self._ids.id_for(tenant.name, data)
        with self._lock:
            if image_id in self._entries:
                self._drop(image_id)
            if limit is not None:
                mine = (i for i, (owner, _) in list(self._entries.items()) if owner == tenant.name)
                while self._owned.get(tenant.name, 0) + size > limit:
                    self._drop(next(mine))
            self._entries[image_id] = (tenant.name, data)
            self._bytes += size
            self._owned[tenant.name] = self._owned.get(tenant.name, 0) + size
            while len(self._entries) > self.max_images or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
        return image_id

    def get(self, image_id: str, tenant: Tenant) -> bytes:
        with self._lock:
            entry = self._entries.get(image_id) if IMAGE_ID.match(image_id) else None
            if entry is None or not tenant.sees(entry[0]):
                raise not_found(image_id)
            self._entries.move_to_end(image_id)
            return entry[1]

    def owned_bytes(self, tenant: str) -> int:
        """Bytes of uploads `tenant` keeps here."""
        with self._lock:
            return self._owned.get(tenant, 0)
