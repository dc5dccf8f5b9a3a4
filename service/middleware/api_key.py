"""API keys: `Authorization: Bearer <key>` (the scheme in any case) names the request's
tenant; health, readiness and docs are exempt, and /metrics also takes the scrape token."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.middleware.tenants import KeyRing
from service.workers.tenancy import SCOPE_KEY

EXEMPT = frozenset(
    {"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}
)
METRICS = "/metrics"


def bearer(scope: Scope) -> bytes | None:
    """The credentials of an `Authorization: Bearer <key>` header (RFC 9110: the scheme is
    case-insensitive), or None."""
    given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, key = given.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not key.strip():
        return None
    return key.strip()


class ApiKeyMiddleware:
    def __init__(
        self, app: ASGIApp, keys: KeyRing, *, exempt_prefixes: tuple[str, ...] = ("/ui",)
    ) -> None:
        self.app = app
        self._keys = keys
        self._exempt_prefixes = exempt_prefixes

    def _exempt(self, path: str) -> bool:
        return path in EXEMPT or any(
            path == p or path.startswith(p + "/") for p in self._exempt_prefixes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A job replayed by the replica that runs it was authorized when it was submitted;
        # the replay carries that request's tenant in its scope.
        replayed = "layerscope.job" in scope
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or self._exempt(scope["path"])
            or replayed
        ):
            await self.app(scope, receive, send)
            return
        key = bearer(scope)
        tenant = self._keys.tenant(key) if key is not None else None
        if tenant is not None:
            scope[SCOPE_KEY] = tenant
        elif not (key is not None and scope["path"] == METRICS and self._keys.scrapes(key)):
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
