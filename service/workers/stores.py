"""Where images and jobs live, chosen once at start-up: this process, or Redis when
`LAYERSCOPE_REDIS_URL` is set (every replica then answers every image_id and job id)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp

from service.settings import Settings
from service.workers.image_store import Images, ImageStore
from service.workers.job_queue import JobQueue, replica_name
from service.workers.job_records import Jobs
from service.workers.job_store import JobStore
from service.workers.redis_images import RedisImageStore
from service.workers.redis_jobs import RedisJobStore
from service.workers.redis_link import OUTAGE, connect, connect_async


def _store(
    settings: Settings, local: Callable[..., Any], shared: Callable[..., Any], limits: dict, **extra
) -> Any:
    """`local(**limits)`, or with Redis `shared` on a connection, with the same limits and the
    Redis-only `extra` settings."""
    if settings.redis_url is None:
        return local(**limits)
    connection = connect(settings.redis_url)
    return shared(connection, **limits, retry_after_s=settings.redis_retry_after_s, **extra)


def build_images(settings: Settings) -> Images:
    limits = {
        "max_images": settings.image_store_max_images,
        "max_bytes": settings.image_store_max_bytes,
    }
    return _store(settings, ImageStore, RedisImageStore, limits, ttl_s=settings.redis_image_ttl_s)


def build_jobs(settings: Settings) -> Jobs:
    limits = {
        "max_jobs": settings.max_jobs,
        "ttl_s": settings.job_ttl_s,
        "timeout_s": settings.job_timeout_s,
    }
    return _store(
        settings,
        JobStore,
        RedisJobStore,
        limits,
        max_bytes=settings.redis_job_bytes,
        attempts=settings.redis_job_attempts,
    )


def build_queue(settings: Settings, app: ASGIApp, jobs: Jobs) -> JobQueue | None:
    """This replica's consumer of the shared job queue (None without Redis)."""
    if settings.redis_url is None or not isinstance(jobs, RedisJobStore):
        return None
    return JobQueue(
        app,
        jobs,
        connect_async(settings.redis_url, read_timeout_s=settings.redis_heartbeat_s),
        worker=replica_name(),
        lease_s=settings.redis_lease_s,
        heartbeat_s=settings.redis_heartbeat_s,
        slots=settings.redis_jobs_per_replica,
    )


def redis_state(jobs: Jobs) -> str | None:
    """'ok' or why Redis cannot be reached; None when the stores are in-process."""
    if not isinstance(jobs, RedisJobStore):
        return None
    try:
        jobs.redis.ping()
    except OUTAGE as exc:
        return f"unreachable ({type(exc).__name__})"
    return "ok"
