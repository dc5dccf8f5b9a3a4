"""Canonized copies of shared models for LRP, made once per model and device, then reused.

zennit's canonizers change modules (BatchNorm merged into the layer before it, ResNet blocks
given a `Sum` module), so LRP runs on a deep copy of the shared model. Copying and
canonizing a resnet18 costs about as much as the LRP pass itself (bench/methods.py), so the
canonized copy is kept: one per (model, device), at most `LIMIT` of them (least recently
used dropped first), each dropped when its model is garbage-collected (the registry keeps
models for the process's life; a sanity check's randomized copy dies after its request).

A copy is rebuilt when the model's parameters or buffers changed since it was made (their
storage or their in-place version counter). A model that carries hooks when LRP starts
gets a copy of its own that is not kept. A copy is lent to one caller at a time: a
caller that finds it lent (another thread, or a job's step that serves a request in
between) gets a fresh copy of its own, as before this cache.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

LIMIT = 4  # canonized copies kept, over every model and device

# module -> the canonizer instances applied to it (kept applied for the copy's life)
Canonize = Callable[[nn.Module], object]


def _fingerprint(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """Where every parameter and buffer lives and how often it was changed in place."""
    tensors = [*module.parameters(), *module.buffers()]
    return tuple((t.data_ptr(), t._version) for t in tensors)


def _hooked(module: nn.Module) -> bool:
    return any(
        child._forward_hooks
        or child._forward_pre_hooks
        or child._backward_hooks
        or child._backward_pre_hooks
        for child in module.modules()
    )


@dataclass
class _Entry:
    source: weakref.ref[nn.Module]
    fingerprint: tuple[tuple[int, int], ...]
    copy: nn.Module
    lent: bool = False


class CanonizedCopies:
    """Bounded (model, device) -> canonized copy of the model; see the module docstring."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._entries: collections.OrderedDict[tuple[int, str], _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @contextlib.contextmanager
    def lend(
        self, module: nn.Module, device: torch.device, canonize: Canonize
    ) -> Iterator[nn.Module]:
        """A canonized copy of `module` on `device` for the duration of the block.

        `canonize` applies the canonizers to a fresh copy (its changes are never undone:
        the copy exists for them). The caller registers and removes its rule hooks itself;
        the copy must be left without hooks.
        """
        if _hooked(module):  # a request's hooks would be copied along: never keep that copy
            yield _canonized_copy(module, canonize)
            return
        key = (id(module), str(device))
        fingerprint = _fingerprint(module)
        with self._lock:
            entry = self._entries.get(key)
            current = (
                entry is not None and entry.source() is module and entry.fingerprint == fingerprint
            )
            if entry is not None and not current and not entry.lent:
                del self._entries[key]  # the model changed (or died and its id came back)
                entry = None
            if entry is not None and current and not entry.lent:
                entry.lent = True
                self._entries.move_to_end(key)
            elif entry is not None:
                entry = None
                key = None  # lent elsewhere (or stale and lent): a private copy
        if entry is None:
            local = _canonized_copy(module, canonize)
            if key is not None:
                entry = self._keep(key, module, fingerprint, local)
            if entry is None:
                yield local
                return
        try:
            yield entry.copy
        finally:
            with self._lock:
                entry.lent = False

    def _keep(
        self,
        key: tuple[int, str],
        module: nn.Module,
        fingerprint: tuple[tuple[int, int], ...],
        local: nn.Module,
    ) -> _Entry | None:
        """Keep `local` for `key`, lent to the caller; None where another thread kept one
        meanwhile (the caller then uses `local` once)."""
        entry = _Entry(weakref.ref(module, self._forget(key)), fingerprint, local, lent=True)
        with self._lock:
            if key in self._entries:
                return None
            self._entries[key] = entry
            for oldest in [k for k, e in self._entries.items() if not e.lent]:
                if len(self._entries) <= self.limit:
                    break
                del self._entries[oldest]
        return entry

    def _forget(self, key: tuple[int, str]) -> Callable[[weakref.ref], None]:
        entries, lock = self._entries, self._lock

        def drop(dead: weakref.ref) -> None:
            with lock:
                entry = entries.get(key)
                if entry is not None and entry.source is dead:
                    del entries[key]

        return drop


def _canonized_copy(module: nn.Module, canonize: Canonize) -> nn.Module:
    local = copy.deepcopy(module)
    for parameter in local.parameters():
        parameter.requires_grad_(False)  # relevance is taken w.r.t. the input only
    canonize(local)
    return local
