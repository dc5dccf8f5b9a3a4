"""The one place that reads the environment (prefix LAYERSCOPE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration; built once at start and passed down."""

    model_config = SettingsConfigDict(env_prefix="LAYERSCOPE_", extra="ignore")

    models: Path | None = Field(default=None, description="models TOML file; unset: digits + resnet18")
    device: str | None = Field(default=None, description="torch device; default cuda when available, else cpu")
    allow_downloads: bool = Field(default=False, description="let torchvision weights be downloaded")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    worker_threads: int = Field(default=1, ge=1, le=64, description="threads that run model code")
    torch_threads: int | None = Field(default=None, ge=1, description="torch intra-op threads")
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_images: int = Field(default=32, ge=1, description="images per request")
    log_level: str = "info"
    # Model insight (issue 5): caps, the embedding image limit, and when work becomes a job.
    max_insight_steps: int = Field(
        default=4096, ge=1, description="most optimization steps for maximize/invert"
    )
    max_insight_size: int = Field(default=512, ge=8, description="largest image side for maximize")
    max_embedding_images: int = Field(
        default=4096, ge=2, description="images per embedding request"
    )
    sync_budget_s: float = Field(
        default=5.0,
        ge=0,
        allow_inf_nan=False,
        description="estimated seconds above which work runs as a job",
    )
    estimated_flops: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="FLOP/s assumed by estimates; default 2e10 cpu, 2e12 cuda",
    )
    job_threads: int = Field(default=1, ge=1, le=64, description="threads that run jobs")
    max_jobs: int = Field(default=32, ge=1, description="jobs kept at once, finished ones included")
    job_ttl_s: float = Field(
        default=900.0, gt=0, allow_inf_nan=False, description="seconds a finished job is kept"
    )
    job_timeout_s: float = Field(
        default=900.0, gt=0, allow_inf_nan=False, description="running time allowed per job"
    )

    def flops_per_second(self, device_type: str) -> float:
        """The rate cost estimates divide by (`estimated_flops`, or a default per device)."""
        if self.estimated_flops is not None:
            return self.estimated_flops
        return 2e12 if device_type == "cuda" else 2e10
