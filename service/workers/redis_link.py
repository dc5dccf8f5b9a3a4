"""The connection to Redis and what its outage looks like to a client: a 503 with Retry-After.

redis-py reconnects by itself on the next command once Redis is back, so nothing here needs
a restart; short socket timeouts keep a request from hanging while Redis is gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from model_registry.errors import StoreUnavailable

PREFIX = "layerscope:"
OUTAGE = (
    RedisConnectionError,
    RedisTimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    ConnectionError,
    TimeoutError,
)
"""What an unreachable, restarting, loading, full or read-only (failing over) Redis raises."""


def connect(url: str) -> redis.Redis:
    """A thread-safe client (a connection pool) for the routes and the device thread."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=2.0, health_check_interval=10
    )


def connect_async(url: str, *, read_timeout_s: float) -> redis.asyncio.Redis:
    """An asyncio client for the job queue; reads may block up to `read_timeout_s`."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=read_timeout_s + 2.0,
        health_check_interval=10,
    )


def unavailable(retry_after_s: int, exc: BaseException | None = None) -> StoreUnavailable:
    reason = f" ({type(exc).__name__})" if exc is not None else ""
    return StoreUnavailable(
        f"the shared store (Redis) that keeps uploaded images and jobs is unreachable{reason}; "
        f"retry in {retry_after_s} s, or send the image itself instead of image_id",
        retry_after=retry_after_s,
    )


@contextmanager
def outage_is_503(retry_after_s: int) -> Iterator[None]:
    """Turn a Redis outage inside the block into `StoreUnavailable` (503 + Retry-After)."""
    try:
        yield
    except OUTAGE as exc:
        raise unavailable(retry_after_s, exc) from exc
