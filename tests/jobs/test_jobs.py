"""The job store on its own: progress and ETA, cancellation (queued and running), time
limits, TTL expiry, the bound on jobs, and how failures are reported."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from model_registry.errors import InvalidInput, NotFinished, NotFound, TooManyJobs
from service.engine.progress import Progress
from service.jobs.job_store import Encoded, JobStore
from tests.helpers import device_runner, wait_for

RESULT = Encoded(b"done", "text/plain")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Gate:
    """Work that runs `steps` steps, each waiting for the test to open the gate."""

    def __init__(self, steps: int = 10) -> None:
        self.steps = steps
        self.started = threading.Event()
        self.open = threading.Event()
        self.calls = 0

    def __call__(self, progress: Progress) -> Encoded:
        self.calls += 1
        self.started.set()
        for step in range(1, self.steps + 1):
            self.open.wait(30)
            progress(step, self.steps)
        return RESULT


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> Iterator[JobStore]:
    jobs = JobStore(runner=device_runner(), max_jobs=3, ttl_s=60.0, timeout_s=120.0, clock=clock)
    yield jobs
    jobs.shutdown()


def test_progress_eta_and_result(store: JobStore, clock: FakeClock) -> None:
    steps = threading.Event()
    advance = threading.Event()

    def work(progress: Progress) -> Encoded:
        for step in range(1, 5):
            clock.now += 2.0
            progress(step, 8)
        steps.set()
        advance.wait(30)
        return RESULT

    view = store.submit("demo", work, total=8)
    assert view.status in ("queued", "running") and view.total == 8
    steps.wait(30)
    running = store.get(view.id)
    assert (running.status, running.step, running.total) == ("running", 4, 8)
    assert running.eta_s == pytest.approx(8.0)  # 4 steps took 8 s, 4 are left
    assert running.elapsed_s == pytest.approx(8.0)
    with pytest.raises(NotFinished) as info:
        store.result(view.id)
    assert info.value.status == 409
    advance.set()
    wait_for(lambda: store.get(view.id).status == "succeeded")
    done, result = store.result(view.id)
    assert (
        result == RESULT
        and done.eta_s == 0.0
        and done.step == 8
        and done.media_type == "text/plain"
    )


def test_cancel_running_job_stops_at_the_next_step(store: JobStore) -> None:
    gate = Gate(steps=100)
    view = store.submit("demo", gate, total=100)
    gate.started.wait(30)
    cancelled = store.delete(view.id)
    assert cancelled.cancel_requested and cancelled.status == "running"
    gate.open.set()
    wait_for(lambda: store.get(view.id).status == "cancelled")
    assert store.get(view.id).step <= 1
    assert store.get(view.id).finished is not None


def test_cancel_queued_job_never_runs_it(store: JobStore) -> None:
    blocker, queued = Gate(steps=1), Gate(steps=1)
    first = store.submit("demo", blocker, total=1)
    blocker.started.wait(30)
    second = store.submit("demo", queued, total=1)
    assert store.get(second.id).status == "queued"
    assert store.delete(second.id).status == "cancelled"
    blocker.open.set()
    wait_for(lambda: store.get(first.id).status == "succeeded")
    store.shutdown()
    assert queued.calls == 0 and store.get(second.id).status == "cancelled"


def test_time_limit_fails_the_job(store: JobStore, clock: FakeClock) -> None:
    def slow(progress: Progress) -> Encoded:
        for step in range(1, 1000):
            clock.now += 1.0
            progress(step, 1000)
        return RESULT

    view = store.submit("slow", slow, total=1000)
    wait_for(lambda: store.get(view.id).status == "failed")
    failed = store.get(view.id)
    assert failed.error_status == 504 and "limit" in failed.error["detail"]
    assert failed.step <= 122


def test_failures_are_reported_not_raised(store: JobStore) -> None:
    def client_mistake(_progress: Progress) -> Encoded:
        raise InvalidInput("image[0] is empty", field="image")

    def bug(_progress: Progress) -> Encoded:
        raise ZeroDivisionError("secret internals")

    first = store.submit("demo", client_mistake, total=1)
    second = store.submit("demo", bug, total=1)
    wait_for(lambda: store.get(second.id).status == "failed")
    wait_for(lambda: store.get(first.id).status == "failed")
    assert store.get(first.id).error == {"detail": "image[0] is empty", "field": "image"}
    assert store.get(first.id).error_status == 422
    assert store.get(second.id).error == {"detail": "Internal server error"}
    assert store.get(second.id).error_status == 500


def test_ttl_and_delete_forget_finished_jobs(store: JobStore, clock: FakeClock) -> None:
    view = store.submit("demo", lambda _progress: RESULT, total=1)
    wait_for(lambda: store.get(view.id).status == "succeeded")
    clock.now += 59.0
    assert store.get(view.id).status == "succeeded"
    clock.now += 2.0
    with pytest.raises(NotFound) as info:
        store.get(view.id)
    assert info.value.status == 404
    other = store.submit("demo", lambda _progress: RESULT, total=1)
    wait_for(lambda: store.get(other.id).status == "succeeded")
    store.delete(other.id)
    with pytest.raises(NotFound):
        store.get(other.id)
    with pytest.raises(NotFound):
        store.delete("f" * 32)


def test_the_sweeper_drops_expired_jobs_without_requests(clock: FakeClock) -> None:
    jobs = JobStore(runner=device_runner(), max_jobs=3, ttl_s=0.2, timeout_s=60.0, clock=clock)
    jobs.start()
    try:
        view = jobs.submit("demo", lambda _progress: RESULT, total=1)
        wait_for(lambda: jobs.get(view.id).status == "succeeded")
        clock.now += 10.0
        wait_for(lambda: len(jobs) == 0)
    finally:
        jobs.shutdown()


def test_bounded_number_of_jobs(store: JobStore) -> None:
    gates = [Gate(steps=1) for _ in range(3)]
    views = [store.submit("demo", gate, total=1) for gate in gates]
    with pytest.raises(TooManyJobs) as info:
        store.submit("demo", Gate(), total=1)
    assert info.value.status == 429 and info.value.extra["retry_after"] > 0
    gates[0].open.set()
    wait_for(lambda: store.get(views[0].id).status == "succeeded")
    fourth = store.submit("demo", lambda _progress: RESULT, total=1)  # evicts the finished one
    with pytest.raises(NotFound):
        store.get(views[0].id)
    for gate in gates[1:]:
        gate.open.set()
    wait_for(lambda: store.get(fourth.id).status == "succeeded")


def test_shutdown_cancels_running_jobs(clock: FakeClock) -> None:
    jobs = JobStore(runner=device_runner(), max_jobs=3, ttl_s=60.0, timeout_s=60.0, clock=clock)
    gate = Gate(steps=1000)
    view = jobs.submit("demo", gate, total=1000)
    gate.started.wait(30)
    gate.open.set()
    jobs.shutdown()
    assert jobs.get(view.id).status == "cancelled"
