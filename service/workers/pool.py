"""The worker pool: CPU threads for decoding and encoding, one device thread for model code.

Routes never run model code on the event loop. `cpu()` runs decoding, post-processing and
encoding in a thread pool; `forward()` hands batchable model work to the device worker;
`run()` hands any other model work (attribution, optimisation) to the same device thread.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import torch

from model_registry.registry import LoadedModel
from service.workers.admission import Admission, current_deadline
from service.workers.device_worker import BatchFn, DeviceWorker, Work

P = ParamSpec("P")
T = TypeVar("T")


class InferencePool:
    """Owns the CPU threads, the device workers and admission control."""

    def __init__(
        self,
        *,
        cpu_threads: int = 2,
        max_batch: int = 8,
        max_wait_s: float | None = None,
        max_queue: int = 64,
        timeout_s: float = 30.0,
        on_batch: Callable[[str, int, float], None] | None = None,
        on_wait: Callable[[str, float], None] | None = None,
        on_reject: Callable[[str, str], None] | None = None,
        on_stage: Callable[[str, float], None] | None = None,
    ) -> None:
        self._cpu = ThreadPoolExecutor(max_workers=cpu_threads, thread_name_prefix="layerscope-cpu")
        self._devices: dict[str, DeviceWorker] = {}
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._on_wait = on_wait
        self._on_stage = on_stage
        self.timeout_s = timeout_s
        self.admission = Admission(max_queue, timeout_s=timeout_s, on_reject=on_reject)

    def worker(self, device: torch.device) -> DeviceWorker:
        key = str(device)
        if key not in self._devices:
            # On GPU a short wait gathers a batch worth the kernel launches; on CPU batching
            # gains little, so only what is already queued is batched (no added latency).
            wait = (
                self._max_wait_s
                if self._max_wait_s is not None
                else (0.002 if device.type == "cuda" else 0.0)
            )
            self._devices[key] = DeviceWorker(
                device,
                max_batch=self._max_batch,
                max_wait_s=wait,
                on_batch=self._on_batch,
                on_wait=self._on_wait,
            )
        return self._devices[key]

    def _timed(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Callable[[], T]:
        """`fn` bound to its arguments, reporting its duration as the stage named after it."""
        name = getattr(fn, "__name__", "work")

        def call() -> T:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self._on_stage is not None:
                    self._on_stage(name, time.perf_counter() - started)

        return call

    async def cpu(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run CPU work (decode, post-process, encode) off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._cpu, self._timed(fn, *args, **kwargs))

    async def forward(
        self, model: LoadedModel, key: Hashable, payload: Any, size: int, execute: BatchFn
    ) -> Any:
        """Queue batchable model work; equal keys may share one forward pass."""
        work = Work(
            key=key,
            payload=payload,
            size=size,
            execute=execute,
            deadline=current_deadline(self.timeout_s),
            model=model.name,
        )
        return await asyncio.wrap_future(self.worker(model.device).submit(work))

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one piece of model work on its model's device thread, unbatched.

        The model is the first positional argument that is a LoadedModel; without one the
        work runs in the CPU pool.
        """
        model = next((a for a in args if isinstance(a, LoadedModel)), None)
        if model is None:
            return await self.cpu(fn, *args, **kwargs)
        return await self.run_on(model, fn, *args, **kwargs)

    async def run_on(
        self, model: LoadedModel, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn` on `model`'s device thread, unbatched, within the request's deadline."""
        work = self._single(fn, args, kwargs, current_deadline(self.timeout_s), model.name)
        return await asyncio.wrap_future(self.worker(model.device).submit(work))

    async def on_device(
        self, device: torch.device, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn` on `device`'s thread with no deadline: start-up work such as loading models.

        The device thread is the only thread that calls torch's parallel kernels: a second
        calling thread gets its own OpenMP team, and two teams on the same cores make each
        other's forward passes slower (see README, "Execution").
        """
        work = self._single(fn, args, kwargs, math.inf, "")
        return await asyncio.wrap_future(self.worker(device).submit(work))

    def _single(
        self, fn: Callable[..., T], args: tuple, kwargs: dict, deadline: float, model: str
    ) -> Work:
        call = self._timed(fn, *args, **kwargs)
        return Work(
            key=None,
            payload=None,
            size=1,
            execute=lambda _payloads: [call()],
            deadline=deadline,
            model=model,
        )

    def submit_on(self, model: LoadedModel, fn: Callable[[], T], *, deadline: float) -> Future[T]:
        """Queue a job `fn` on `model`'s device thread, from any thread (see `Work.yields`)."""
        call = self._timed(fn)
        work = Work(
            key=None,
            payload=None,
            size=1,
            execute=lambda _payloads: [call()],
            deadline=deadline,
            model=model.name,
            yields=True,
        )
        return self.worker(model.device).submit(work)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Drain the device queues, then stop the CPU threads."""
        for worker in self._devices.values():
            worker.stop(timeout)
        self._cpu.shutdown(wait=True, cancel_futures=False)
