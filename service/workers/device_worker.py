"""One thread per device runs all model code, batching compatible work together.

Work items carry a batch key: items with the same key (same model, same layers or
method) that are queued together are run as one batch, up to `max_batch` images, waiting
at most `max_wait_s` for more to arrive. Items still queued at their deadline are answered
504 without running. Device out-of-memory frees the cache and retries with the batch
split in halves once; what still does not fit is answered 507.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from model_registry.errors import DeadlineExceeded, OutOfDeviceMemory
from model_registry.fast_paths.packed_convolution import packed_weights

log = logging.getLogger("layerscope.workers")

BatchFn = Callable[[list[Any]], list[Any]]


@dataclass(eq=False)
class Work:
    """One request's share of device work.

    Attributes:
        key: items with equal keys may run as one batch; None never batches.
        payload: what `execute` needs for this item.
        size: images in the payload (batches are bounded by their image count).
        execute: runs a list of payloads (one batch) and returns one result per payload.
        deadline: monotonic time after which the item is not started.
        model: the model name, for metrics.
        yields: a job: long work that lets the items queued behind it run between its
            steps (`serve_waiting`); jobs themselves wait their turn.
    """

    key: Hashable | None
    payload: Any
    size: int
    execute: BatchFn
    deadline: float
    model: str
    yields: bool = False
    enqueued: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


class DeviceWorker:
    """A queue and the single thread that drains it for one device."""

    def __init__(
        self,
        device: torch.device,
        *,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[str, int, float], None] | None = None,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.device = device
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._on_wait = on_wait
        self._queue: collections.deque[Work] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._loop, name=f"layerscope-device-{device}", daemon=True
        )
        self._thread.start()

    def submit(self, work: Work) -> Future:
        with self._cond:
            if self._stopping:
                raise RuntimeError("worker is stopping")
            self._queue.append(work)
            self._cond.notify()
        return work.future

    def depth(self) -> int:
        return len(self._queue)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _next_batch(self) -> list[Work] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            batch, size = [first], first.size
            if first.key is None:
                return batch
            wait_until = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                match = next(
                    (
                        w
                        for w in self._queue
                        if w.key == first.key and size + w.size <= self.max_batch
                    ),
                    None,
                )
                if match is not None:
                    self._queue.remove(match)
                    batch.append(match)
                    size += match.size
                    continue
                remaining = wait_until - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
            return batch

    def serve_waiting(self) -> None:
        """Run the items queued behind the current one, one by one, on this thread; a job
        calls this between two steps, with no hooks live, so requests are not held up by
        it. Queued jobs stay queued. Each item runs with the thread's default grad modes
        and kernels."""
        if threading.current_thread() is not self._thread:
            return
        while True:
            with self._cond:
                work = next((w for w in self._queue if not w.yields), None)
                if work is None:
                    return
                self._queue.remove(work)
            with torch.inference_mode(False), torch.enable_grad(), packed_weights(False):
                self._start([work])

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._start(batch)

    def _start(self, batch: list[Work]) -> None:
        now = time.monotonic()
        live = []
        for work in batch:
            if not work.future.set_running_or_notify_cancel():
                continue  # the client went away
            if now > work.deadline:
                work.future.set_exception(
                    DeadlineExceeded(
                        "the request waited in the queue past its deadline and was not run"
                    )
                )
                continue
            live.append(work)
        if live:
            self._run(live, split_on_oom=True)

    def _run(self, batch: list[Work], *, split_on_oom: bool) -> None:
        started = time.monotonic()
        waits = [started - w.enqueued for w in batch]
        try:
            results = batch[0].execute([w.payload for w in batch])
        except torch.OutOfMemoryError:
            self._free_memory()
            if split_on_oom and len(batch) > 1:
                half = len(batch) // 2
                self._run(batch[:half], split_on_oom=False)
                self._run(batch[half:], split_on_oom=False)
            else:
                for work in batch:
                    work.future.set_exception(
                        OutOfDeviceMemory(
                            f"the work did not fit in {self.device} memory; send fewer or smaller "
                            "images",
                        )
                    )
            return
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to its request
            if len(batch) > 1:
                for work in batch:  # isolate: one bad item must not fail its batch-mates
                    self._run([work], split_on_oom=split_on_oom)
                return
            batch[0].future.set_exception(exc)
            return
        if self._on_wait is not None:
            for wait in waits:
                self._on_wait(batch[0].model, wait)
        if self._on_batch is not None and batch[0].key is not None:  # a batched forward pass
            self._on_batch(batch[0].model, sum(w.size for w in batch), time.monotonic() - started)
        for work, result in zip(batch, results, strict=True):
            work.future.set_result(result)

    def _free_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
