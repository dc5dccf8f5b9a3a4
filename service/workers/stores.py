"""Where images live, chosen once at start-up: this process, or Redis when
`LAYERSCOPE_REDIS_URL` is set (every replica then answers every image_id). The job stores
choose the same way (`service.jobs.stores`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.settings import Settings
from service.workers.image_store import Images, ImageStore
from service.workers.redis_images import RedisImageStore
from service.workers.redis_link import connect


def local_or_redis(
    settings: Settings, local: Callable[..., Any], shared: Callable[..., Any], limits: dict, **extra
) -> Any:
    """`local(**limits)`, or with Redis `shared` on a connection, with the same limits and the
    Redis-only `extra` settings."""
    if settings.redis_url is None:
        return local(**limits)
    connection = connect(settings.redis_url)
    return shared(connection, **limits, retry_after_s=settings.redis_retry_after_s, **extra)


def build_images(settings: Settings) -> Images:
    secret = settings.id_secret
    limits = {
        "max_images": settings.image_store_max_images,
        "max_bytes": settings.image_store_max_bytes,
        "tenant_max_bytes": settings.tenant_max_image_bytes,
        # unset: random per process, or with Redis the one every replica finds there
        "secret": secret.get_secret_value().encode() if secret is not None else None,
    }
    return local_or_redis(
        settings, ImageStore, RedisImageStore, limits, ttl_s=settings.redis_image_ttl_s
    )
