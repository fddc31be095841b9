"""Prometheus metrics (`GET /metrics`) and a request id on every response and on every log line of the
request (service/log_format.py), access line included.

Each app has its own registry, so several apps in one process (tests) never share counters.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.settings import Settings
from service.log_format import REQUEST_ID

log = logging.getLogger("service.access")
STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
# Past the stages' range, request latency keeps its resolution up to the deadline (a search that waits for a
# slot, then runs long, or one stopped by the deadline lands in its own bucket, not in +Inf).
_LONG_STEPS_S = (5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0)
DEFAULT_DEADLINE_S: float = Settings.model_fields["request_timeout_s"].default
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


def request_buckets(deadline_s: float) -> tuple[float, ...]:
    """STAGE_BUCKETS_S, then steps up to and including the request deadline `deadline_s`."""
    longer = [step for step in _LONG_STEPS_S if STAGE_BUCKETS_S[-1] < step < deadline_s]
    return tuple(sorted({*STAGE_BUCKETS_S, *longer, float(deadline_s)}))


class ServiceMetrics:
    """`deadline_s`: the request deadline (FASHION_REQUEST_TIMEOUT_S), the last finite latency bucket."""

    def __init__(self, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fashion_requests", "HTTP requests by route and status", ["route", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "fashion_request_seconds", "HTTP request latency by route", ["route"], registry=self.registry,
            buckets=request_buckets(deadline_s),
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
    label set), tag it with a request id (the caller's X-Request-ID when sane, else a new one) that every
    log line of the request carries, and log one access line (ObservedRequests)."""
    app.add_middleware(ObservedRequests, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def _metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


class ObservedRequests:
    """ASGI middleware. The request id (REQUEST_ID) is set for the whole exchange, answer included: the
    tasks and threads that serve the request copy the context, and uvicorn's own access line, written as the
    answer starts, runs inside it too. Time and the access line are taken when the answer starts (a session
    stream counts until its headers, not for the hour it stays open)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
                self.observe(scope, message["status"], time.perf_counter() - started)
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)

    def observe(self, scope: Scope, status: int, elapsed_s: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.latency.labels(route).observe(elapsed_s)
        log.info(
            "method=%s route=%s status=%d ms=%.1f",  # text lines show the request id before the message
            scope["method"],
            route,
            status,
            elapsed_s * 1000,
            # the same as fields of a JSON line (FASHION_LOG_FORMAT=json)
            extra={
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed_s * 1000, 1),
            },
        )
