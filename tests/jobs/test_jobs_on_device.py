"""Jobs run on the model's device worker: its thread, its out-of-memory answer (507), its
queue deadline (504), its stage metrics; and requests queued behind a job are served
between the job's steps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import torch

from model_registry.config import default_specs
from model_registry.registry import LoadedModel, load_model
from service.engine.progress import Progress
from service.jobs.job_store import Encoded, JobStore
from service.jobs.on_device import on_device
from service.workers.pool import InferencePool
from tests.helpers import wait_for

RESULT = Encoded(b"done", "text/plain")


@pytest.fixture(scope="module")
def digits() -> LoadedModel:
    spec = next(s for s in default_specs() if s.name == "digits")
    return load_model(spec, torch.device("cpu"))


@pytest.fixture
def stages() -> list[str]:
    return []


@pytest.fixture
def pool(stages: list[str]) -> Iterator[InferencePool]:
    workers = InferencePool(
        cpu_threads=1, timeout_s=30.0, on_stage=lambda stage, _s: stages.append(stage)
    )
    yield workers
    workers.shutdown()


@pytest.fixture
def jobs() -> Iterator[JobStore]:
    store = JobStore(max_jobs=4, ttl_s=60.0, timeout_s=60.0)
    yield store
    store.shutdown()


def submit(jobs: JobStore, pool: InferencePool, model: LoadedModel, work, *, timeout_s=60.0):
    job, runner = on_device(pool, model, work, timeout_s=timeout_s)
    return jobs.submit("demo", job, total=3, runner=runner)


def test_a_job_runs_on_the_device_thread_and_reports_its_stage(
    jobs: JobStore, pool: InferencePool, digits: LoadedModel, stages: list[str]
) -> None:
    threads: list[str] = []

    def work(progress: Progress) -> Encoded:
        threads.append(threading.current_thread().name)
        with torch.inference_mode():
            logits = digits.module(torch.zeros(1, 1, *digits.spec.input_size))
        progress(1, 1)
        return Encoded(logits.numpy().tobytes(), "application/octet-stream")

    view = submit(jobs, pool, digits, work)
    wait_for(lambda: jobs.get(view.id).status == "succeeded")
    assert threads == ["layerscope-device-cpu"]
    assert len(jobs.result(view.id)[1].body) == 4 * digits.spec.num_classes
    assert "job_demo" in stages


def test_out_of_device_memory_fails_the_job_with_507(
    jobs: JobStore, pool: InferencePool, digits: LoadedModel
) -> None:
    def work(_progress: Progress) -> Encoded:
        raise torch.OutOfMemoryError("CUDA out of memory (raised by the test)")

    view = submit(jobs, pool, digits, work)
    wait_for(lambda: jobs.get(view.id).status == "failed")
    failed = jobs.get(view.id)
    assert failed.error_status == 507 and "memory" in failed.error["detail"]


def test_a_job_queued_past_its_deadline_fails_with_504(
    jobs: JobStore, pool: InferencePool, digits: LoadedModel
) -> None:
    gate, started = threading.Event(), threading.Event()

    def blocker(progress: Progress) -> Encoded:
        started.set()
        gate.wait(30)
        progress(1, 1)
        return RESULT

    first = submit(jobs, pool, digits, blocker)
    started.wait(30)
    late = submit(jobs, pool, digits, lambda _progress: RESULT, timeout_s=0.0)
    gate.set()
    wait_for(lambda: jobs.get(late.id).status == "failed")
    assert jobs.get(late.id).error_status == 504
    wait_for(lambda: jobs.get(first.id).status == "succeeded")


def test_requests_behind_a_job_are_served_between_its_steps(
    jobs: JobStore, pool: InferencePool, digits: LoadedModel
) -> None:
    answered = threading.Event()
    steps_after_answer: list[int] = []

    def long_job(progress: Progress) -> Encoded:
        for step in range(1, 2001):
            time.sleep(0.001)
            progress(step, 2000)
            if answered.is_set():
                steps_after_answer.append(step)
                if len(steps_after_answer) > 2:
                    return RESULT
        return RESULT

    view = submit(jobs, pool, digits, long_job)
    wait_for(lambda: jobs.get(view.id).step > 0)

    async def request() -> str:
        return await pool.run_on(digits, lambda: threading.current_thread().name)

    assert asyncio.run(request()) == "layerscope-device-cpu"
    answered.set()
    wait_for(lambda: jobs.get(view.id).status == "succeeded")
    assert steps_after_answer and steps_after_answer[0] < 2000
