"""Answers the workers give instead of a result: overload, deadline, device memory."""

from __future__ import annotations

from model_registry.errors import ClientError


class Overloaded(ClientError):
    """The model's queue is full; the client should retry later (or elsewhere)."""

    status = 503


class DeadlineExceeded(ClientError):
    """The request was still queued at its deadline and was never run."""

    status = 504


class OutOfDeviceMemory(ClientError):
    """The work did not fit in device memory, even with the batch split."""

    status = 507
