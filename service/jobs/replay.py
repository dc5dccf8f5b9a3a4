"""A job is the request that started it: kept in Redis, replayed by whichever replica runs it.

Keeping the request (method, path, query, content type and body) rather than a pickled
closure means every job kind, present and future, runs on any replica through the same
route code, with the same validation and the same errors. `ReplayCapture` keeps a copy of
each body as it streams in (only when Redis is on); `call_app` sends a stored request
through this replica's app, with an `Execution` in the ASGI scope that tells
`routes.common.answer_or_job` (or `answer_dataset_job`) to run the work here, on the device
thread, as that job.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.jobs.execution import Execution
from service.jobs.job_records import Replay
from service.workers.tenancy import OPEN, SCOPE_KEY

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
