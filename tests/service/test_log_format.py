"""FASHION_LOG_FORMAT=json: one JSON object a line, with the request id on every line of a request (the
access line, an unhandled error's traceback), and request latency buckets that reach the deadline."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from service.errors import install_error_handlers
from service.log_format import REQUEST_ID, configure_logging, log_handler
from service.metrics import STAGE_BUCKETS_S, ServiceMetrics, install_metrics, request_buckets


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the root logger writes during the test, as JSON lines; our loggers at INFO meanwhile."""
    stream = io.StringIO()
    handler = log_handler("json", stream)
    root = logging.getLogger()
    service = logging.getLogger("service")
    level = service.level
    root.addHandler(handler)
    service.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        service.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def failing_app() -> FastAPI:
    """The service's error net and metrics middleware in the order create_app installs them, and a route
    that fails unexpectedly."""
    app = FastAPI()
    install_error_handlers(app)
    install_metrics(app, ServiceMetrics())

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaput")

    return app


def test_every_line_is_json_with_the_standard_fields(json_log: io.StringIO) -> None:
    logging.getLogger("service.test").warning("plain %s", "line")
    token = REQUEST_ID.set("rid-1")
    try:
        logging.getLogger("service.test").info("inside a request")
    finally:
        REQUEST_ID.reset(token)
    outside, inside = lines(json_log)
    assert outside["message"] == "plain line" and outside["request_id"] is None
    assert {"time", "level", "logger", "message", "request_id"} <= outside.keys()
    assert outside["level"] == "WARNING" and outside["logger"] == "service.test"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", outside["time"])
    assert inside["request_id"] == "rid-1" and inside["level"] == "INFO"


def test_an_unhandled_error_traceback_and_the_access_line_carry_the_request_id(json_log: io.StringIO) -> None:
    with TestClient(failing_app(), raise_server_exceptions=False) as client:
        answer = client.get("/boom", headers={"X-Request-ID": "req-42"})
    assert answer.status_code == 500 and "kaput" not in answer.text
    logged = lines(json_log)
    error = next(line for line in logged if line["logger"] == "service.errors")
    assert error["request_id"] == "req-42" and error["level"] == "ERROR"
    assert "Traceback" in error["exc_info"] and "RuntimeError: kaput" in error["exc_info"]
    access = next(line for line in logged if line["logger"] == "service.access")
    assert access["request_id"] == "req-42"
    assert access["method"] == "GET" and access["route"] == "/boom" and access["status"] == 500
    assert REQUEST_ID.get() is None  # reset once the request is answered


def test_the_real_app_access_line_has_the_generated_request_id(
    client: TestClient, json_log: io.StringIO
) -> None:
    answer = client.get("/v1/items/nope")
    assert answer.status_code == 404
    access = [line for line in lines(json_log) if line["logger"] == "service.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == answer.headers["x-request-id"]
    assert access[0]["route"] == "/v1/items/{item_id}" and access[0]["status"] == 404


def test_text_lines_show_the_request_id_inside_a_request() -> None:
    stream = io.StringIO()
    handler = log_handler("text", stream)
    logger = logging.getLogger("service.test.text")
    logger.addHandler(handler)
    try:
        logger.warning("outside")
        token = REQUEST_ID.set("rid-9")
        try:
            logger.warning("inside")
        finally:
            REQUEST_ID.reset(token)
    finally:
        logger.removeHandler(handler)
    outside, inside = stream.getvalue().splitlines()
    assert outside.endswith(" WARNING service.test.text: outside")
    assert inside.endswith(" WARNING service.test.text [rid-9]: inside")


def test_the_request_id_spans_the_answer_and_streams_keep_theirs(json_log: io.StringIO) -> None:
    """uvicorn's access line is written in the ASGI send of the answer's start, and a streamed body is sent
    after the route returned: both still see the request's id."""
    from fastapi.responses import StreamingResponse

    app = FastAPI()
    install_metrics(app, ServiceMetrics())
    seen: list[str | None] = []

    @app.get("/stream")
    def stream() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            seen.append(REQUEST_ID.get())
            yield b"data: 1\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def send_logger(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen.append(REQUEST_ID.get())

    wrapped = app.middleware_stack or app.build_middleware_stack()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/stream", "raw_path": b"/stream", "root_path": "", "query_string": b"",
        "headers": [(b"host", b"test"), (b"x-request-id", b"sse-1")], "client": ("127.0.0.1", 1),
        "server": ("test", 80), "state": {},
    }  # fmt: skip
    received = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        for message in received:
            return message
        await anyio.sleep_forever()  # the client stays for the whole stream
        raise AssertionError("unreachable")

    anyio.run(wrapped, scope, receive, send_logger)
    assert seen == ["sse-1", "sse-1"]
    access = next(line for line in lines(json_log) if line["logger"] == "service.access")
    assert access["request_id"] == "sse-1" and access["route"] == "/stream"


def test_configure_logging_replaces_the_root_handlers() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure_logging("json", stream)
        assert len(root.handlers) == 1 and root.level == logging.WARNING
        logging.getLogger("thirdparty").warning("hello")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
    assert json.loads(stream.getvalue())["message"] == "hello"


def bucket_bounds(metrics: ServiceMetrics) -> list[float]:
    metrics.latency.labels("/healthz").observe(0.001)
    text = generate_latest(metrics.registry).decode()
    found = re.findall(r'^fashion_request_seconds_bucket\{le="([^"]+)",route="/healthz"\}', text, re.M)
    return [float(bound) for bound in found if bound != "+Inf"]


def test_request_latency_buckets_reach_the_deadline() -> None:
    default = bucket_bounds(ServiceMetrics())
    assert default[: len(STAGE_BUCKETS_S)] == list(STAGE_BUCKETS_S)
    assert default[-1] == 10.0 and 5.0 in default  # the Settings default deadline
    assert bucket_bounds(ServiceMetrics(deadline_s=42.0))[-1] == 42.0
    assert request_buckets(3.0) == (*STAGE_BUCKETS_S, 3.0)
    assert request_buckets(0.3) == tuple(sorted({*STAGE_BUCKETS_S, 0.3}))
    assert list(request_buckets(120.0)) == sorted(request_buckets(120.0))


@pytest.mark.slow
def test_serve_writes_json_lines(tmp_path: Path) -> None:
    from tests.e2e.serving import built_index, server_process, tiny_model_env

    (tmp_path / "model").mkdir()
    env = {**tiny_model_env(tmp_path / "model"), "FASHION_LOG_FORMAT": "json"}
    index = built_index(tmp_path / "data", 6, env)
    log_path = tmp_path / "serve.log"
    with server_process(index, env, log_path) as (_, base):
        answer = httpx.get(f"{base}/v1/items/nope", headers={"X-Request-ID": "e2e-7"}, timeout=10)
        assert answer.status_code == 404
    logged = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert any(line["logger"] == "uvicorn.error" for line in logged)  # uvicorn's own lines too
    ours = [line for line in logged if line["request_id"] == "e2e-7"]
    access = next(line for line in ours if line["logger"] == "service.access")
    assert access["status"] == 404 and access["route"] == "/v1/items/{item_id}"
    uvicorn_access = next(line for line in ours if line["logger"] == "uvicorn.access")
    assert "/v1/items/nope" in uvicorn_access["message"]  # written as the answer starts, in its context
