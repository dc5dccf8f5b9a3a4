"""Optional bearer token: compared in constant time; health, readiness and docs are exempt."""

from __future__ import annotations

import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT = frozenset(
    {"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}
)


class ApiKeyMiddleware:
    def __init__(
        self, app: ASGIApp, api_key: str, *, exempt_prefixes: tuple[str, ...] = ("/ui",)
    ) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()
        self._exempt_prefixes = exempt_prefixes

    def _exempt(self, path: str) -> bool:
        return path in EXEMPT or any(
            path == p or path.startswith(p + "/") for p in self._exempt_prefixes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A job replayed by the replica that runs it was authorized when it was submitted.
        replayed = "layerscope.job" in scope
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or self._exempt(scope["path"])
            or replayed
        ):
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not hmac.compare_digest(given, self._expected):
            response = JSONResponse(
                {
                    "detail": "missing or wrong API key; send 'Authorization: Bearer <key>'",
                    "field": "authorization",
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
