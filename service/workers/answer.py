"""What a task returns: the engine's result and the encoded bytes of its answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Answer(Generic[R]):
    """`body` holds png/npy/npz bytes (for json answers, the png they embed, or nothing);
    routes build the JSON bodies from `result`."""

    result: R
    body: bytes
    media_type: str
