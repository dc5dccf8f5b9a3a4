"""The one place that reads the environment (prefix LAYERSCOPE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration; built once at start and passed down."""

    model_config = SettingsConfigDict(env_prefix="LAYERSCOPE_", extra="ignore")

    models: Path | None = Field(
        default=None, description="models TOML file; unset: digits + resnet18"
    )
    device: str | None = Field(
        default=None, description="torch device; default cuda when available, else cpu"
    )
    allow_downloads: bool = Field(
        default=False, description="let torchvision weights be downloaded"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    cpu_threads: int = Field(
        default=2, ge=1, le=64, description="threads that decode, render and encode"
    )
    max_batch: int = Field(default=8, ge=1, le=256, description="images per batched forward pass")
    max_batch_wait_ms: float | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="wait for more work to batch; default 2 ms on CUDA, 0 on CPU",
    )
    max_queue: int = Field(default=64, ge=1, description="requests admitted per model before 503")
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="a request still queued then is answered 504"
    )
    torch_threads: int | None = Field(default=None, ge=1, description="torch intra-op threads")
    pack_convolutions: bool = Field(
        default=True,
        description="a CAM's passes on the CPU run convolutions on weights reordered once for "
        "oneDNN (equal to torch's to float rounding); false: torch's own kernel everywhere",
    )
    channels_last_pooling: bool = Field(
        default=True,
        description="max pooling without a gradient on the CPU runs on a channels-last copy "
        "(bitwise the same values); false: torch's own kernel",
    )
    fast_png: bool = Field(
        default=True,
        description="PNG answers written with ISA-L deflate (same pixels); false: Pillow's encoder",
    )
    blas_threads: int = Field(
        default=1,
        ge=1,
        description="threads of numpy's BLAS (PCA); more than one spin against torch's team",
    )
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_images: int = Field(default=32, ge=1, description="images per request")
    max_request_pixels: int = Field(
        default=100_000_000, ge=1, description="pixels of all a request's pictures (413 above)"
    )
    max_aspect_ratio: float = Field(
        default=100.0, ge=1, allow_inf_nan=False, description="a picture's long/short side (422)"
    )
    max_body_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="request body limit (413 above)"
    )
    max_layers: int = Field(default=16, ge=1, description="layers per request")
    max_tiles: int = Field(
        default=4096, ge=1, description="tiles in one PNG answer (images x channels x layers)"
    )
    max_output_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="estimated answer size before running"
    )
    image_store_max_images: int = Field(
        default=256, ge=1, description="images kept by POST /v1/images"
    )
    image_store_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="bytes kept by POST /v1/images"
    )
    activation_cache_bytes: int = Field(
        default=512 * 1024 * 1024, ge=0, description="captured layers kept for repeat views"
    )
    api_key: SecretStr | None = Field(
        default=None, description="require 'Authorization: Bearer <key>'; one tenant, 'default'"
    )
    # Tenants (service/middleware/tenants.py parses these; a bad value stops start-up).
    api_keys: SecretStr | None = Field(
        default=None, description="tenants as 'name:key,name:key' (a key may be sha256:<hex>)"
    )
    api_keys_file: Path | None = Field(default=None, description="a file of 'name:key' lines")
    admin_tenants: str = Field(default="", description="tenants that see every tenant's work")
    metrics_token: SecretStr | None = Field(
        default=None, description="a bearer token that reads GET /metrics and nothing else"
    )
    id_secret: SecretStr | None = Field(
        default=None,
        description="keys image ids (HMAC); unset: random per process, or shared via Redis",
    )
    tenant_max_jobs: int | None = Field(
        default=None, ge=1, description="queued or running jobs per tenant (429 above)"
    )
    tenant_max_image_bytes: int | None = Field(
        default=None, ge=1024, description="stored upload bytes per tenant; its oldest go first"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="CORS allowed origins; empty: CORS off"
    )
    drain_timeout_s: float = Field(
        default=30.0, gt=0, description="SIGTERM: how long in-flight requests may finish"
    )
    log_level: str = "info"
    log_json: bool = Field(default=True, description="structured JSON log lines")
    # Model insight: caps, the embedding image limit, and when work becomes a job.
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
    max_jobs: int = Field(default=32, ge=1, description="jobs kept at once, finished ones included")
    job_ttl_s: float = Field(
        default=900.0, gt=0, allow_inf_nan=False, description="seconds a finished job is kept"
    )
    job_timeout_s: float = Field(
        default=900.0, gt=0, allow_inf_nan=False, description="running time allowed per job"
    )

    # Scale-out: with a Redis URL, images and jobs are shared by every replica.
    redis_url: str | None = Field(
        default=None,
        description="e.g. redis://127.0.0.1:6379/0; unset: images and jobs stay in this process",
    )
    redis_image_ttl_s: float = Field(
        default=3600.0, gt=0, allow_inf_nan=False, description="seconds an unused upload is kept"
    )
    redis_job_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="bytes of job requests and results kept"
    )
    redis_lease_s: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="a running job whose replica stopped heartbeating this long runs again",
    )
    redis_heartbeat_s: float = Field(
        default=5.0, gt=0, allow_inf_nan=False, description="how often a running job's lease renews"
    )
    redis_job_attempts: int = Field(
        default=3, ge=1, description="replicas a job may lose before it fails"
    )
    redis_jobs_per_replica: int = Field(
        default=1, ge=1, le=64, description="jobs one replica takes from the queue at once"
    )
    shard_images: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="with Redis, pictures per slice of a dataset job (any replica runs a slice)",
    )
    redis_retry_after_s: int = Field(
        default=5, ge=1, description="Retry-After of the 503 answered while Redis is unreachable"
    )

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        # A lease that lapses between two heartbeats would hand live jobs to other replicas.
        if self.redis_heartbeat_s >= self.redis_lease_s:
            raise ValueError(
                f"redis_heartbeat_s ({self.redis_heartbeat_s:g}) must be shorter than "
                f"redis_lease_s ({self.redis_lease_s:g})"
            )
        return self

    def flops_per_second(self, device_type: str) -> float:
        """The rate cost estimates divide by (`estimated_flops`, or a default per device)."""
        if self.estimated_flops is not None:
            return self.estimated_flops
        return 2e12 if device_type == "cuda" else 2e10
