"""Job bodies: status, progress, ETA and where the result is."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class JobProgress(BaseModel):
    step: int
    total: int
    fraction: float = Field(ge=0, le=1)


class ShardRun(BaseModel):
    shard: int = Field(ge=0, description="the slice's index (slices are SHARD_IMAGES pictures)")
    replica: str = Field(description="the replica (host-pid) computing it")


class JobShards(BaseModel):
    """With Redis, a dataset job runs as slices of SHARD_IMAGES pictures on any replica."""

    total: int = Field(ge=0, description="slices of the job")
    done: int = Field(ge=0, description="slices whose partial result is stored")
    running: list[ShardRun] = Field(description="slices being computed now, and where")
    by_replica: dict[str, int] = Field(description="replica -> slices it finished")
    rerun: list[int] = Field(
        description="slices started more than once (their replica was lost or stopped)"
    )
    merge_s: float | None = Field(
        default=None, description="seconds the merge of the slices' partials took, once done"
    )


class JobBody(BaseModel):
    id: str
    kind: str = Field(examples=["maximize"])
    status: JobStatus
    progress: JobProgress
    eta_s: float | None = Field(description="seconds left, extrapolated from the steps so far")
    elapsed_s: float = Field(description="running time so far (or in total, once finished)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    result_url: str | None = Field(
        description="GET it for the result (png, npy or json) once succeeded"
    )
    result: Any | None = Field(
        default=None, description="the result itself when it is JSON (format=json), once succeeded"
    )
    error: dict[str, Any] | None = Field(description="the error body, when the job failed")
    error_status: int | None = Field(description="the HTTP status the error would have had")
    replica: str | None = Field(
        default=None,
        description="with Redis: the replica (host-pid) running or last running the job",
    )
    attempts: int = Field(
        default=0, ge=0, description="with Redis: how many times a replica started the job"
    )
    shards: JobShards | None = Field(
        default=None, description="with Redis, for a dataset job split into slices"
    )
