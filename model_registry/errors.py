"""Every error layerscope raises on purpose: the ones a client can cause, and the start-up
error a bad models file, weights file or setting causes.

Client errors carry the HTTP status the service answers with, the offending field and
extra JSON members (valid choices, ranges); routes build their OpenAPI `responses` from
the types they can raise. Nothing here imports a web framework: the service maps these
onto responses.
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


class BadRequest(ClientError):
    """The request body could not be read (a broken multipart form)."""

    status = 400


class NotFound(ClientError):
    """An unknown model, layer, image id or job."""

    status = 404


class NotFinished(ClientError):
    """The job has not succeeded (yet), so it has no result."""

    status = 409


class PayloadTooLarge(ClientError):
    """Too many images, too many pixels or too large an answer."""

    status = 413


class UnsupportedMedia(ClientError):
    """An upload that is not a readable image."""

    status = 415


class InvalidInput(ClientError):
    """A parameter out of range or not among the choices; `field` names it."""

    status = 422


class TooManyJobs(ClientError):
    """Every job slot holds an unfinished job."""

    status = 429


class NotReady(ClientError):
    """The models are still loading."""

    status = 503


class Overloaded(ClientError):
    """The model's queue is full; the client should retry later (or elsewhere)."""

    status = 503


class StoreUnavailable(ClientError):
    """The shared store (Redis) that keeps uploaded images and jobs cannot be reached."""

    status = 503


class DeadlineExceeded(ClientError):
    """The request was still queued at its deadline and was never run."""

    status = 504


class TooSlow(ClientError):
    """A synchronous computation ran past the time a job gets; send async=true."""

    status = 504


class OutOfDeviceMemory(ClientError):
    """The work did not fit in device memory, even with the batch split."""

    status = 507


class ConfigError(Exception):
    """A models file, weights file or setting that cannot be served; raised at start-up,
    naming the file, the entry and the field.

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
