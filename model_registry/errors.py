"""Errors a client can cause, and the start-up error a bad model entry causes.

Client errors carry the HTTP status the service answers with, the offending field
and extra JSON members (valid choices, ranges). Nothing here imports a web framework:
the service maps these onto responses.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ClientError(Exception):
    """A request the client can fix. `status` is the HTTP status it maps to."""

    status: int = 400

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body: `detail` first, then the field and any extra members."""
        body: dict[str, Any] = {"detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body


class NotFound(ClientError):
    status = 404


class InvalidInput(ClientError):
    status = 422


class PayloadTooLarge(ClientError):
    status = 413


class UnsupportedMedia(ClientError):
    status = 415


class ConfigError(Exception):
    """A model entry that cannot be served; raised at start-up, naming entry and field.

    The message is kept on one line (library errors quoted in it may span several), so
    start-up can print it as one.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def closest(name: str, choices: Iterable[str], *, n: int = 5) -> list[str]:
    """The `n` choices most similar to `name` (difflib ratio), best first."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.4)


def unknown_model(name: str, choices: Iterable[str]) -> NotFound:
    available = sorted(choices)
    return NotFound(
        f"Unknown model '{name}'. Available models: {', '.join(available)}. See GET /v1/models.",
        field="model",
        choices=available,
    )


def unknown_layer(
    model: str, name: str, choices: Iterable[str], *, field: str = "layers"
) -> NotFound:
    suggestions = closest(name, choices)
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    return NotFound(
        f"Unknown layer '{name}' for model '{model}'.{hint} "
        f"The full list is at GET /v1/models/{model}/layers.",
        field=field,
        closest=suggestions,
        catalog=f"/v1/models/{model}/layers",
    )
