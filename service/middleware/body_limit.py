"""Request body limit, enforced from Content-Length and again while reading (chunked uploads).

FastAPI's own `max_body_size` answers text/plain from outside the user middleware (no
request id, no JSON body), so the limit is enforced here with the service's error body.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _response(self) -> JSONResponse:
        return JSONResponse(
            {
                "detail": f"request body is larger than the limit of {self.max_bytes} bytes",
                "field": "body",
                "max_bytes": self.max_bytes,
            },
            status_code=413,
            headers={"Connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._response()(scope, receive, send)
            return
        received = 0
        started = responded = False

        async def limited_receive() -> Message:
            nonlocal received, responded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not started:
                    # Answer now and tell the app the client is gone: whatever the app
                    # makes of a disconnect (400, ClientDisconnect) is never sent.
                    responded = True
                    await self._response()(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if responded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
