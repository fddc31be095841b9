"""Co-viewing over a real `fashion-search serve`: the event stream read with httpx as a page would, session
expiry ending it, streams released when clients go, and SIGTERM not held up by open streams."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.coview import MAX_STREAMS
from tests.e2e.serving import built_index, running_server, start_server, tiny_model_env
from tests.helpers import garment_image, jpeg_bytes

pytestmark = pytest.mark.slow
TIMEOUT = httpx.Timeout(10.0)  # no read waits longer: a missing event fails the test instead of hanging it


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **tiny_model_env(tmp_path_factory.mktemp("model")),
        "FASHION_RATE_LIMIT_PER_S": "0",
        "FASHION_STREAM_PING_S": "0.3",
    }


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    return built_index(tmp_path_factory.mktemp("coview"), 8, env)


@pytest.fixture(scope="module")
def server(index: Path, env: dict[str, str]) -> Iterator[str]:
    with running_server(index, env) as base:
        yield base


def new_session(base: str) -> str:
    created = httpx.post(f"{base}/v1/sessions", json={}, timeout=TIMEOUT)
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session_id"]
    return session_id


class EventReader:
    """Server-sent events off an open httpx response, one at a time, pings kept apart."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()
        self.pings = 0

    def next(self) -> tuple[str, Any] | None:
        """The next event as (name, parsed data); None when the stream ends."""
        name = data = ""
        for line in self._lines:
            if line.startswith(":"):
                self.pings += 1
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "" and name:
                return name, json.loads(data)
        return None

    def rest(self) -> list[str]:
        names = []
        while (event := self.next()) is not None:
            names.append(event[0])
        return names


def test_the_stream_carries_every_change_in_order(server: str) -> None:
    session_id = new_session(server)
    url = f"{server}/v1/sessions/{session_id}"
    photo = {"image": ("street.jpg", jpeg_bytes(garment_image(6, size=800)), "image/jpeg")}
    with httpx.Client(timeout=TIMEOUT) as page, page.stream("GET", f"{url}/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["x-accel-buffering"] == "no" and stream.headers["cache-control"] == "no-cache"
        events = EventReader(stream)
        name, first = events.next() or ("", None)
        assert name == "snapshot" and first["session_id"] == session_id and first["search"] is None

        said = httpx.post(f"{url}/messages", json={"sender": "shopper", "text": "is this in blue?"})
        assert events.next() == ("message", said.json())
        pushed = httpx.post(f"{url}/push", json={"item_id": "item-0002", "note": "this one"})
        assert events.next() == ("push", pushed.json())
        clicked = {"type": "click", "item_id": "item-0002", "category": "skirt", "session_id": session_id}
        assert httpx.post(f"{server}/v1/events", json=clicked).status_code == 202
        name, activity = events.next() or ("", None)
        assert name == "activity" and activity["item_id"] == "item-0002" and activity["type"] == "click"
        name, insight = events.next() or ("", None)  # every activity re-reads the shopper
        assert name == "insight" and insight["intent"] == "browsing" and insight["cart"] == []
        searched = httpx.post(f"{server}/v1/search", files=photo, data={"session_id": session_id}, timeout=60)
        assert searched.status_code == 200, searched.text
        name, shared = events.next() or ("", None)
        assert name == "search" and shared["search"]["garments"] == searched.json()["garments"]

        time.sleep(0.7)  # idle: pings keep the connection open
        httpx.post(f"{url}/messages", json={"sender": "assistant", "text": "yes"})
        assert (events.next() or ("", {}))[1]["text"] == "yes"
        assert events.pings >= 1
    shown = httpx.get(f"{server}{shared['photo_url']}", timeout=TIMEOUT)
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"


def open_stream(stack: contextlib.ExitStack, page: httpx.Client, url: str) -> EventReader:
    """Open a stream and read its snapshot, retrying a 429 for a few seconds: the server notices a closed
    connection a moment after the client closes it. The stream stays open while the reader is referenced
    (dropping a half-read httpx line iterator closes its connection)."""
    deadline = time.monotonic() + 5
    while True:
        response = stack.enter_context(page.stream("GET", url))
        if response.status_code == 200:
            reader = EventReader(response)
            assert (reader.next() or ("",))[0] == "snapshot"
            return reader
        assert response.status_code == 429, response.status_code
        response.close()
        if time.monotonic() > deadline:
            pytest.fail("closed streams were never released: the session still holds its maximum")
        time.sleep(0.1)


def test_closed_streams_are_released(server: str) -> None:
    """Three times as many streams as a session may hold at once, opened and closed one after another, then
    the most it may hold at once: each closed stream must have been released."""
    url = f"{server}/v1/sessions/{new_session(server)}/stream"
    with httpx.Client(timeout=TIMEOUT) as page:
        for _ in range(3 * MAX_STREAMS):
            with contextlib.ExitStack() as stack:
                open_stream(stack, page, url)
        with contextlib.ExitStack() as stack:
            readers = [open_stream(stack, page, url) for _ in range(MAX_STREAMS)]
            one_more = stack.enter_context(page.stream("GET", url))
            assert one_more.status_code == 429
            assert json.loads(one_more.read())["code"] == "too_many_streams"
            assert len(readers) == MAX_STREAMS  # all of them open until here


def test_an_expiring_session_ends_its_stream(index: Path, env: dict[str, str]) -> None:
    with running_server(index, {**env, "FASHION_SESSION_TTL_S": "2"}) as base:
        session_id = new_session(base)
        started = time.monotonic()
        with (
            httpx.Client(timeout=TIMEOUT) as page,
            page.stream("GET", f"{base}/v1/sessions/{session_id}/stream") as s,
        ):
            events = EventReader(s)
            assert (events.next() or ("",))[0] == "snapshot"
            assert events.next() == ("expired", {})
            assert events.next() is None  # and the stream ends
        took = time.monotonic() - started
        gone = httpx.get(f"{base}/v1/sessions/{session_id}", timeout=TIMEOUT)
    assert 1.5 < took < 6, took
    assert gone.status_code == 404 and gone.json()["code"] == "session_not_found"


def test_sigterm_is_not_held_up_by_open_streams(index: Path, env: dict[str, str]) -> None:
    """The graceful-shutdown timeout is 30 s; open event streams must end at once instead."""
    process, base = start_server(index, {**env, "FASHION_SHUTDOWN_TIMEOUT_S": "30"})
    try:
        session_id = new_session(base)
        with httpx.Client(timeout=TIMEOUT) as page:
            url = f"{base}/v1/sessions/{session_id}/stream"
            with page.stream("GET", url) as first, page.stream("GET", url) as second:
                readers = [EventReader(first), EventReader(second)]
                assert [(r.next() or ("",))[0] for r in readers] == ["snapshot", "snapshot"]
                stopping = time.monotonic()
                process.send_signal(signal.SIGTERM)
                rests = [r.rest() for r in readers]  # each ends cleanly, without an `expired` event
        returncode = process.wait(timeout=15)
        took = time.monotonic() - stopping
    except subprocess.TimeoutExpired:
        pytest.fail("the server was still running 15 s after SIGTERM")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert rests == [[], []]
    assert returncode == 0, process.output()[-2000:]
    assert took < 5, f"stopping took {took:.1f} s"
