"""Admission control: a bounded number of requests per model, and each request's deadline."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from model_registry.errors import Overloaded

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "layerscope_deadline", default=None
)


def current_deadline(default_timeout_s: float) -> float:
    """The admitted request's deadline, or one starting now."""
    deadline = _deadline.get()
    return deadline if deadline is not None else time.monotonic() + default_timeout_s


class Admission:
    """At most `max_queue` requests per model are admitted (queued or running) at once."""

    def __init__(
        self,
        max_queue: int,
        *,
        timeout_s: float,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._on_reject = on_reject

    def depths(self) -> dict[str, int]:
        """Requests admitted and not finished, per model."""
        with self._lock:
            return dict(self._counts)

    @contextmanager
    def enter(self, model: str) -> Iterator[None]:
        """Admit one request for `model`, or raise 503 at once when its queue is full."""
        with self._lock:
            if self._counts.get(model, 0) >= self.max_queue:
                if self._on_reject is not None:
                    self._on_reject(model, "queue_full")
                raise Overloaded(
                    f"model '{model}' has {self.max_queue} requests queued; retry shortly",
                    retry_after=1,
                    model=model,
                )
            self._counts[model] = self._counts.get(model, 0) + 1
        token = _deadline.set(time.monotonic() + self.timeout_s)
        try:
            yield
        finally:
            _deadline.reset(token)
            with self._lock:
                self._counts[model] -= 1
