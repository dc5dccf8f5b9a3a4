"""Where jobs live, chosen once at start-up: this process, or Redis when
`LAYERSCOPE_REDIS_URL` is set (every replica then answers every job id and consumes the
shared queue)."""

from __future__ import annotations

from starlette.types import ASGIApp

from service.jobs.job_queue import JobQueue, replica_name
from service.jobs.job_records import Jobs
from service.jobs.job_store import JobStore
from service.jobs.redis_jobs import RedisJobStore
from service.settings import Settings
from service.workers.redis_link import OUTAGE, connect_async
from service.workers.stores import local_or_redis


def build_jobs(settings: Settings) -> Jobs:
    limits = {
        "max_jobs": settings.max_jobs,
        "ttl_s": settings.job_ttl_s,
        "timeout_s": settings.job_timeout_s,
        "tenant_max_jobs": settings.tenant_max_jobs,
    }
    return local_or_redis(
        settings,
        JobStore,
        RedisJobStore,
        limits,
        max_bytes=settings.redis_job_bytes,
        attempts=settings.redis_job_attempts,
    )


def build_queue(settings: Settings, app: ASGIApp, jobs: Jobs) -> JobQueue | None:
    """This replica's saq worker on the shared job queue (None without Redis)."""
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
        drain_s=settings.drain_timeout_s,
        shard_images=settings.shard_images,
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
