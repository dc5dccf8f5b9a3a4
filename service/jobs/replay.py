"""A job is the request that started it: kept in Redis, replayed by whichever replica runs it.

Keeping the request (method, path, query, content type and body) rather than a pickled
closure means every job kind, present and future, runs on any replica through the same
route code, with the same validation and the same errors. `ReplayCapture` keeps a copy of
each body as it streams in (only when Redis is on); `call_app` sends a stored request
through this replica's app, with an `Execution` in the ASGI scope that tells
`routes.common.answer_or_job` to run the work here, on the device thread, as that job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import MutableMapping
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_registry.errors import ClientError
from model_registry.registry import LoadedModel
from service.engine.progress import Cancelled, Progress
from service.jobs.job_records import CANCELLED, FAILED, SUCCEEDED, Encoded, Replay, TimedOut
from service.jobs.on_device import Job, on_device
from service.jobs.redis_jobs import LeaseLost, RedisJobStore
from service.workers.pool import InferencePool
from service.workers.redis_link import OUTAGE
from service.workers.tenancy import OPEN, SCOPE_KEY

log = logging.getLogger("layerscope")

BODY = "layerscope.body"
EXECUTION = "layerscope.job"
"""Scope keys: clients cannot set them (the server builds the scope)."""

_KEPT_HEADERS = (b"content-type",)


class ReplayCapture:
    """Keep each request's body chunks in its scope, so a job can store the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        scope[BODY] = chunks

        async def keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        await self.app(scope, keep, send)


def replay_of(scope: MutableMapping[str, Any]) -> Replay | None:
    """The request in `scope` as a `Replay` (None when its body was not captured), with the
    tenant the auth middleware found (the key is not kept)."""
    chunks = scope.get(BODY)
    if chunks is None and scope.get("method") == "POST":
        return None
    headers = tuple((k, v) for k, v in scope.get("headers", ()) if k in _KEPT_HEADERS)
    body = b"".join(chunks or ())
    query, tenant = scope.get("query_string", b""), scope.get(SCOPE_KEY, OPEN)
    return Replay(scope["method"], scope["path"], query, headers, body, tenant)


class HandBack(Cancelled):
    """This replica is shutting down: the job goes back to the queue for another one."""


class Execution:
    """One claimed job run on this replica; `outcome` is what the queue records."""

    def __init__(self, store: RedisJobStore, job_id: str, worker: str, stopping: Any) -> None:
        self.store, self.job_id, self.worker = store, job_id, worker
        self._stopping = stopping
        self.outcome: tuple[str, Encoded | None, dict | None, int | None] | None = None
        self.lost = False
        self.handed_back = False

    def _progress(self, deadline: float) -> Progress:
        timeout = self.store.timeout_s

        def progress(step: int, total: int) -> None:
            try:
                state = self.store.progress(self.job_id, self.worker, step, total)
            except OUTAGE:
                state = "ok"  # keep computing; the outcome is written once Redis is back
            if state == "lost":
                raise LeaseLost(f"job {self.job_id} is now run by another replica")
            if state == "cancel":
                raise Cancelled(f"job {self.job_id} was cancelled")
            if self._stopping.is_set():
                raise HandBack(f"job {self.job_id} goes back to the queue")
            if time.time() > deadline:
                raise TimedOut(f"job {self.job_id} ran past its limit of {timeout:g} s")

        return progress

    async def run(self, pool: InferencePool, model: LoadedModel, work: Job, total: int) -> Response:
        """Run `work` as this job on `model`'s device thread (called by `answer_or_job`)."""
        timeout = self.store.timeout_s
        progress = self._progress(time.time() + timeout)
        job, start = on_device(pool, model, work, timeout_s=timeout)

        def call() -> Encoded:
            progress(0, total)
            return job(progress)

        try:
            result = await asyncio.wrap_future(start(call))
        except HandBack:
            self.handed_back = True
        except LeaseLost:
            self.lost = True
        except TimedOut as exc:
            self.outcome = (FAILED, None, {"detail": str(exc), "timeout_s": timeout}, 504)
        except Cancelled:
            self.outcome = (CANCELLED, None, None, None)
        except ClientError as exc:
            self.outcome = (FAILED, None, exc.body(), exc.status)
        except Exception as exc:
            log.error("job %s failed", self.job_id, exc_info=exc)
            self.outcome = (FAILED, None, {"detail": "Internal server error"}, 500)
        else:
            self.outcome = (SUCCEEDED, result, None, None)
        return Response(status_code=204)


async def call_app(app: ASGIApp, replay: Replay, execution: Execution) -> tuple[int, bytes]:
    """Send `replay` through `app` (middleware included) with `execution` in its scope."""
    headers = [*replay.headers, (b"content-length", str(len(replay.body)).encode())]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": replay.method,
        "scheme": "http",
        "path": replay.path,
        "raw_path": replay.path.encode(),
        "query_string": replay.query,
        "root_path": "",
        "headers": headers,
        "client": ("job", 0),
        "server": ("job", 0),
        "state": {},
        EXECUTION: execution,
        SCOPE_KEY: replay.tenant,  # the auth middleware lets a replayed job through as is
    }
    sent, done = False, asyncio.Event()
    status, chunks = 500, []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": replay.body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    done.set()
    return status, b"".join(chunks)
