"""Prometheus metrics of one app: requests by endpoint and status, latency, queue depth, batch sizes."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the app)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """A registry of its own per app, so two apps in one process (tests) do not share counts."""

    def __init__(self, queue_depth: Callable[[], float] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mmvgm_requests", "HTTP requests by endpoint and status",
                                ("method", "endpoint", "status"), registry=self.registry)
        self.latency = Histogram("mmvgm_request_seconds", "Request latency by endpoint", ("endpoint",),
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch = Histogram("mmvgm_batch_size", "Files per model batch", buckets=BATCH_BUCKETS,
                               registry=self.registry)
        self.queue = Gauge("mmvgm_queue_depth", "Requests waiting for the model", registry=self.registry)
        self.queue.set_function(queue_depth)
        self.jobs = Gauge("mmvgm_jobs_pending_files", "Job files not scored yet", registry=self.registry)

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware counting every response under its route's template (``/v1/jobs/{id}``),
    so a path full of ids does not make a series per request."""

    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"  # bounded label values
            self.metrics.observe(method, endpoint, status, time.perf_counter() - start)
