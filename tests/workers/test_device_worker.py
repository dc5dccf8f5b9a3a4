"""The device worker: batching, deadlines, OOM splitting, fault isolation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from model_registry.errors import DeadlineExceeded, OutOfDeviceMemory
from service.workers.device_worker import DeviceWorker, Work


def _work(key, payload, execute, *, size: int = 1, deadline_s: float = 30.0) -> Work:
    return Work(
        key=key,
        payload=payload,
        size=size,
        execute=execute,
        deadline=time.monotonic() + deadline_s,
        model="m",
    )


@contextmanager
def running(*, max_batch: int, batches: list[int] | None = None) -> Iterator[DeviceWorker]:
    """A CPU device worker that batches at once; each forward batch's size goes to `batches`."""
    record = None if batches is None else (lambda m, n, s: batches.append(n))
    worker = DeviceWorker(torch.device("cpu"), max_batch=max_batch, max_wait_s=0.0, on_batch=record)
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def gate() -> threading.Event:
    return threading.Event()


def _blocker(gate: threading.Event):
    def execute(payloads):
        gate.wait(10)
        return payloads

    return execute


def test_compatible_work_queued_together_runs_as_one_batch(gate: threading.Event) -> None:
    batches: list[int] = []
    with running(max_batch=8, batches=batches) as worker:
        blocker = worker.submit(_work(None, 0, _blocker(gate)))

        def double(payloads):
            stacked = torch.cat(payloads)
            return list((stacked * 2).split([p.shape[0] for p in payloads]))

        futures = [
            worker.submit(_work("double", torch.full((n, 2), float(i)), double, size=n))
            for i, n in enumerate([1, 2, 3, 1])
        ]
        other = worker.submit(_work("other", torch.ones(1), lambda ps: [p + 1 for p in ps]))
        gate.set()
        blocker.result(5)
        for i, (future, n) in enumerate(zip(futures, [1, 2, 3, 1], strict=True)):
            assert torch.equal(future.result(5), torch.full((n, 2), 2.0 * i))
        assert other.result(5).item() == 2
        # the four compatible items, then the other key; the unkeyed blocker is no forward batch
        assert batches == [7, 1]


def test_batches_respect_the_image_cap(gate: threading.Event) -> None:
    batches: list[int] = []
    with running(max_batch=4, batches=batches) as worker:
        worker.submit(_work(None, 0, _blocker(gate)))
        futures = [worker.submit(_work("k", i, lambda ps: ps, size=3)) for i in range(3)]
        gate.set()
        assert [f.result(5) for f in futures] == [0, 1, 2]
        assert batches == [3, 3, 3]  # the unkeyed blocker is not counted


def test_work_past_its_deadline_is_not_run(gate: threading.Event) -> None:
    ran: list[int] = []
    with running(max_batch=8) as worker:
        worker.submit(_work(None, 0, _blocker(gate)))
        late = worker.submit(_work(None, 1, lambda ps: ran.append(1) or ps, deadline_s=0.05))
        time.sleep(0.1)
        gate.set()
        with pytest.raises(DeadlineExceeded):
            late.result(5)
        assert ran == []


def test_out_of_memory_splits_the_batch_then_gives_507(gate: threading.Event) -> None:
    calls: list[int] = []

    def execute(payloads):
        calls.append(len(payloads))
        if sum(payloads) > 2:  # "memory" for at most 2 units of work
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return payloads

    with running(max_batch=8) as worker:
        worker.submit(_work(None, 0, _blocker(gate)))
        fits = [worker.submit(_work("k", 1, execute)) for _ in range(4)]
        gate.set()
        assert [f.result(5) for f in fits] == [1, 1, 1, 1]
        assert calls == [4, 2, 2]
        too_big = worker.submit(_work("k", 3, execute, size=3))
        with pytest.raises(OutOfDeviceMemory) as info:
            too_big.result(5)
        assert info.value.status == 507
        assert worker.submit(_work("k", 1, execute)).result(5) == 1  # still serving


def test_one_failing_item_does_not_fail_its_batch_mates(gate: threading.Event) -> None:
    def execute(payloads):
        if "bad" in payloads:
            raise ValueError("bad payload")
        return [p.upper() for p in payloads]

    with running(max_batch=8) as worker:
        worker.submit(_work(None, 0, _blocker(gate)))
        good, bad, good2 = (worker.submit(_work("k", p, execute)) for p in ("a", "bad", "b"))
        gate.set()
        assert good.result(5) == "A" and good2.result(5) == "B"
        with pytest.raises(ValueError):
            bad.result(5)


def test_stop_drains_queued_work(gate: threading.Event) -> None:
    worker = DeviceWorker(torch.device("cpu"), max_batch=1, max_wait_s=0.0)
    worker.submit(_work(None, 0, _blocker(gate)))
    queued = [worker.submit(_work(None, i, lambda ps: ps)) for i in range(3)]
    threading.Timer(0.1, gate.set).start()
    worker.stop(timeout=5)
    assert [f.result(0) for f in queued] == [0, 1, 2]
    with pytest.raises(RuntimeError):
        worker.submit(_work(None, 9, lambda ps: ps))
