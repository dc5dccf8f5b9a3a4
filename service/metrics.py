"""Prometheus metrics, one registry per app (so several apps in one process never clash)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


def hook_count(module: torch.nn.Module) -> int:
    """Forward, pre-forward and backward hooks on a module and all its submodules."""
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in module.modules()
    )


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _per_model(name: str, documentation: str, values: dict[str, int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["model"])
    for model, value in values.items():
        gauge.add_metric([model], value)
    return gauge


class _LiveGauges(Collector):
    """Queue depth per model, hooks left on served models and GPU memory, read at scrape time."""

    def __init__(
        self, depths: Callable[[], dict[str, int]], hooks: Callable[[], dict[str, int]]
    ) -> None:
        self._depths = depths
        self._hooks = hooks

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield _per_model(
            "layerscope_queue_depth",
            "Requests admitted and not finished, per model",
            self._depths(),
        )
        yield _per_model(
            "layerscope_model_hooks",
            "Hooks registered on a served model right now (0 between requests)",
            self._hooks(),
        )
        if torch.cuda.is_available():
            memory = GaugeMetricFamily(
                "layerscope_gpu_memory_bytes",
                "GPU memory allocated by torch",
                labels=["device", "kind"],
            )
            for index in range(torch.cuda.device_count()):
                memory.add_metric(
                    [f"cuda:{index}", "allocated"], torch.cuda.memory_allocated(index)
                )
                memory.add_metric([f"cuda:{index}", "reserved"], torch.cuda.memory_reserved(index))
            yield memory


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = self._histogram(
            "layerscope_request_duration_seconds",
            "End-to-end request latency",
            "route",
            "method",
            "status",
        )
        self.queue_wait = self._histogram(
            "layerscope_queue_wait_seconds", "Time work waited for the device thread", "model"
        )
        self.stages = self._histogram(
            "layerscope_stage_seconds",
            "Time per stage (forward, decode, render/encode, ...)",
            "stage",
        )
        self.batch_size = self._histogram(
            "layerscope_batch_size",
            "Images per forward pass on the device thread",
            "model",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.rejections = Counter(
            "layerscope_rejections_total",
            "Requests refused before running, by reason",
            ["reason"],
            registry=self.registry,
        )

    def _histogram(
        self,
        name: str,
        documentation: str,
        *labels: str,
        buckets: Sequence[float] = _LATENCY_BUCKETS,
    ) -> Histogram:
        """A histogram in this registry (latency buckets by default)."""
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def watch(
        self, depths: Callable[[], dict[str, int]], hooks: Callable[[], dict[str, int]]
    ) -> None:
        self.registry.register(_LiveGauges(depths, hooks))

    def observe_batch(self, model: str, images: int, seconds: float) -> None:
        """One batched forward pass (other device work reports its own stage by name)."""
        self.batch_size.labels(model).observe(images)
        self.stages.labels("forward").observe(seconds)

    def observe_wait(self, model: str, seconds: float) -> None:
        self.queue_wait.labels(model).observe(seconds)

    def reject(self, _model: str, reason: str) -> None:
        self.rejections.labels(reason).inc()
