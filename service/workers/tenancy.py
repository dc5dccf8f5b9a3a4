"""Who a request acts for, and the image ids that only its tenant can recompute.

The auth middleware names the tenant; routes pass it down as a plain value, so the stores
here never see a request.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Tenant:
    """The owner of images, cached layers and jobs.

    Attributes:
        name: the key's tenant name; "" when the service runs without API keys (one tenant).
        admin: sees (reads and cancels) every tenant's images and jobs.
    """

    name: str
    admin: bool = False

    def sees(self, owner: str) -> bool:
        """Whether work owned by `owner` is visible to this tenant (else it answers 404)."""
        return self.admin or owner == self.name


OPEN = Tenant("")
"""The one tenant of a service without API keys."""

SCOPE_KEY = "layerscope.tenant"
"""Where the auth middleware puts the request's `Tenant` in the ASGI scope (clients cannot
set scope keys)."""


class ImageIds:
    """Image ids as HMAC-SHA256 of the picture under a per-tenant key derived from one secret.

    The same picture gets the same id for one tenant (uploads deduplicate) and unrelated ids
    for two tenants; without the secret, nobody can test whether a picture was uploaded.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._keys: dict[str, bytes] = {}

    def _key(self, tenant: str) -> bytes:
        key = self._keys.get(tenant)
        if key is None:
            key = hmac.new(self._secret, b"image-id\x00" + tenant.encode(), "sha256").digest()
            self._keys[tenant] = key
        return key

    def id_for(self, tenant: str, data: bytes) -> str:
        """The 64-hex-digit id of `data` uploaded by `tenant`."""
        return hmac.new(self._key(tenant), data, hashlib.sha256).hexdigest()
