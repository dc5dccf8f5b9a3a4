"""Jobs run where all model work runs: on their model's device worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from model_registry.registry import LoadedModel
from service.engine.progress import Progress
from service.jobs.job_store import Encoded, Runner
from service.workers.pool import InferencePool

Job = Callable[[Progress], Encoded]


def on_device(
    pool: InferencePool, model: LoadedModel, work: Job, *, timeout_s: float
) -> tuple[Job, Runner]:
    """`work` as a job on `model`'s device thread, and the runner that queues it there.

    Between two of its steps the job serves the requests queued behind it, so a long job
    does not hold them up; a job still queued `timeout_s` after it was submitted fails with
    504 without running.
    """
    worker = pool.worker(model.device)

    def job(progress: Progress) -> Encoded:
        def step(done: int, total: int) -> None:
            progress(done, total)  # raises once the job is cancelled or out of time
            worker.serve_waiting()

        return work(step)

    def start(call: Callable[[], Any]) -> Future:
        return pool.submit_on(model, call, deadline=time.monotonic() + timeout_s)

    return job, start
