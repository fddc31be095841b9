"""Prometheus metrics (`GET /metrics`) and a request id on every response and access log line.

Each app has its own registry, so several apps in one process (tests) never share counters.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger("service.access")
STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fashion_requests", "HTTP requests by route and status", ["route", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "fashion_request_seconds", "HTTP request latency by route", ["route"], registry=self.registry,
            buckets=STAGE_BUCKETS_S,
        )  # fmt: skip
        self.stages = Histogram(
            "fashion_search_stage_seconds",
            "time per search stage (decode, detect, embed, attributes, search, rank, total)",
            ["stage"],
            registry=self.registry,
            buckets=STAGE_BUCKETS_S,
        )
        self.in_flight = Gauge(
            "fashion_searches_in_flight", "searches holding a slot", registry=self.registry
        )
        self.waiting = Gauge("fashion_searches_waiting", "searches queued for a slot", registry=self.registry)
        self.index_items = Gauge("fashion_index_items", "items in the served index", registry=self.registry)
        self.index_info = Gauge(
            "fashion_index_info", "the served index (value 1)", ["build", "model"], registry=self.registry
        )

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stages.labels(stage).observe(ms / 1000.0)

    def set_index(self, build: str, model: str, items: int) -> None:
        self.index_items.set(items)
        self.index_info.clear()
        self.index_info.labels(build, model).set(1)


def install_metrics(app: FastAPI, metrics: ServiceMetrics) -> None:
    """Count and time every request by its route template (never the raw path: ids would explode the
    label set), tag it with a request id (the caller's X-Request-ID when sane, else a new one), and log
    one access line."""

    @app.middleware("http")
    async def _observe(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(elapsed)
        response.headers["X-Request-ID"] = request_id
        log.info(
            "request_id=%s method=%s route=%s status=%d ms=%.1f",
            request_id,
            request.method,
            route,
            response.status_code,
            elapsed * 1000,
        )
        return response

    @app.get("/metrics", include_in_schema=False)
    def _metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
