"""Two real `fashion-search serve` replicas over one index and one real redis-server (FASHION_REDIS_URL), as
behind a load balancer with no sticky routing: a co-viewing session lives in Redis (created on A, written
on B, seen in A's snapshot and A's event stream), the rate-limit buckets are shared, shopper statistics sum
over both, and with Redis killed search keeps answering while the shared-state routes answer 503 with
Retry-After, until Redis is back."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.serving import ServerProcess, built_index, start_server, tiny_model_env, wait_until
from tests.e2e.test_coview_stream import EventReader
from tests.helpers import garment_image, jpeg_bytes
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow
TIMEOUT = httpx.Timeout(10.0)
ADMIN = {"X-Admin-Key": "replica-admin-key"}
BURST = 5
_addresses = itertools.count(1)


def shopper() -> dict[str, str]:
    """Headers of a new shopper address (the servers trust the loopback proxy's X-Forwarded-For), so each
    test starts with full rate-limit buckets of its own."""
    return {"X-Forwarded-For": f"203.0.113.{next(_addresses)}"}


@pytest.fixture(scope="module")
def redis(redis_server_session: RedisServer) -> RedisServer:
    """The run's redis-server (tests/conftest.py), emptied once: the replicas keep their keys under their own
    prefix for the whole module."""
    if redis_server_session.process is None:
        redis_server_session.start()
    redis_server_session.flush()
    return redis_server_session


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> dict[str, str]:
    return {
        **tiny_model_env(tmp_path_factory.mktemp("model")),
        "FASHION_REDIS_URL": redis.url,
        "FASHION_REDIS_PREFIX": "replicas-test",
        "FASHION_ADMIN_KEY": ADMIN["X-Admin-Key"],
        "FASHION_TRUSTED_PROXIES": '["127.0.0.1"]',
        "FASHION_RATE_LIMIT_PER_S": "0.01",  # no refill to speak of during the test: the burst is the budget
        "FASHION_RATE_LIMIT_BURST": str(BURST),
        "FASHION_STREAM_PING_S": "0.3",
        "FASHION_PROFILES_ENABLED": "true",  # in Redis, since FASHION_REDIS_URL is set
    }


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    index = built_index(tmp_path_factory.mktemp("replicas"), 8, env)
    processes: list[ServerProcess] = []
    try:
        bases = []
        for _ in range(2):
            process, base = start_server(index, env)
            processes.append(process)
            bases.append(base)
        yield bases[0], bases[1]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            process.log_path.unlink(missing_ok=True)


@pytest.fixture
def redis_up(redis: RedisServer, replicas: tuple[str, str]) -> Iterator[RedisServer]:
    """Redis running (started again if a test killed it) and the replicas seeing it as up."""
    if redis.process is None:
        redis.start()
    wait_until(lambda: all(ready(base).get("shared_state") == "up" for base in replicas), 15, "Redis up")
    yield redis


def ready(base: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{base}/readyz", timeout=TIMEOUT).json()
    return answer


def new_session(base: str, headers: dict[str, str]) -> str:
    created = httpx.post(f"{base}/v1/sessions", json={}, headers=headers, timeout=TIMEOUT)
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session_id"]
    return session_id


def search(base: str, headers: dict[str, str]) -> httpx.Response:
    photo = jpeg_bytes(garment_image(3))
    return httpx.post(
        f"{base}/v1/search",
        files={"image": ("look.jpg", photo, "image/jpeg")},
        headers=headers,
        timeout=TIMEOUT,
    )


def test_a_session_created_on_a_takes_a_message_on_b_that_a_shows(
    replicas: tuple[str, str], redis_up: RedisServer
) -> None:
    a, b = replicas
    headers = shopper()
    session_id = new_session(a, headers)
    events: list[tuple[str, Any]] = []
    with contextlib.ExitStack() as stack:
        response = stack.enter_context(
            httpx.stream("GET", f"{a}/v1/sessions/{session_id}/stream", headers=headers, timeout=TIMEOUT)
        )
        assert response.status_code == 200
        reader = EventReader(response)
        first = reader.next()
        assert first is not None and first[0] == "snapshot"
        posted = httpx.post(
            f"{b}/v1/sessions/{session_id}/messages",
            json={"sender": "assistant", "text": "Try the navy one"},
            headers=headers,
            timeout=TIMEOUT,
        )
        assert posted.status_code == 201, posted.text
        event = reader.next()
        assert event is not None
        events.append(event)
    name, data = events[0]
    assert name == "message"
    assert data["text"] == "Try the navy one" and data["sender"] == "assistant"
    snapshot = httpx.get(f"{a}/v1/sessions/{session_id}", headers=headers, timeout=TIMEOUT).json()
    assert [message["text"] for message in snapshot["messages"]] == ["Try the navy one"]
    assert httpx.get(f"{b}/v1/sessions/{session_id}", headers=headers, timeout=TIMEOUT).json() == snapshot


def test_a_burst_split_across_both_replicas_is_limited_as_one_bucket(
    replicas: tuple[str, str], redis_up: RedisServer
) -> None:
    headers = shopper()
    codes = [search(replicas[i % 2], headers).status_code for i in range(BURST + 2)]
    assert codes[:BURST] == [200] * BURST, codes  # each replica alone saw at most 3 of them
    assert codes[BURST:] == [429, 429], codes
    refused = search(replicas[1], headers)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def test_events_posted_to_both_replicas_sum_in_the_stats(
    replicas: tuple[str, str], redis_up: RedisServer
) -> None:
    a, b = replicas
    before = httpx.get(f"{a}/v1/stats", headers={**ADMIN, **shopper()}, timeout=TIMEOUT).json()
    for base, kind in ((a, "click"), (b, "click"), (b, "add_to_cart")):
        event = {"type": kind, "item_id": "item-0001", "category": "top"}
        sent = httpx.post(f"{base}/v1/events", json=event, headers=shopper(), timeout=TIMEOUT)
        assert sent.status_code == 202, sent.text
    seen_on_a = httpx.get(f"{a}/v1/stats", headers={**ADMIN, **shopper()}, timeout=TIMEOUT).json()
    seen_on_b = httpx.get(f"{b}/v1/stats", headers={**ADMIN, **shopper()}, timeout=TIMEOUT).json()
    assert seen_on_a == seen_on_b
    assert seen_on_a["totals"]["clicks"] == before["totals"]["clicks"] + 2
    assert seen_on_a["totals"]["add_to_cart"] == before["totals"]["add_to_cart"] + 1


def test_a_profile_made_on_a_learns_on_b_and_is_forgotten_everywhere(
    replicas: tuple[str, str], redis_up: RedisServer
) -> None:
    a, b = replicas
    made = httpx.post(
        f"{a}/v1/profiles", json={"colours": ["red"], "learn": True}, headers=shopper(), timeout=TIMEOUT
    )
    assert made.status_code == 201, made.text
    profile_id = made.json()["profile_id"]
    event = {"type": "add_to_cart", "item_id": "item-0001", "category": "top", "profile_id": profile_id}
    assert httpx.post(f"{b}/v1/events", json=event, headers=shopper(), timeout=TIMEOUT).status_code == 202
    learned = httpx.get(f"{a}/v1/profiles/{profile_id}", headers=shopper(), timeout=TIMEOUT).json()
    assert learned["learned"]["brand"] == {"testwear": 1.0}
    photo = jpeg_bytes(garment_image(0))
    found = httpx.post(
        f"{b}/v1/search",
        files={"image": ("look.jpg", photo, "image/jpeg")},
        data={"profile_id": profile_id},
        headers=shopper(),
        timeout=TIMEOUT,
    )
    assert found.status_code == 200 and any(
        m["profile_match"] for m in found.json()["garments"][0]["matches"]
    )
    forgotten = httpx.delete(f"{b}/v1/profiles/{profile_id}", headers=shopper(), timeout=TIMEOUT)
    assert forgotten.status_code == 204
    gone = httpx.get(f"{a}/v1/profiles/{profile_id}", headers=shopper(), timeout=TIMEOUT)
    assert gone.status_code == 404 and gone.json()["code"] == "profile_not_found"


def test_redis_down_gives_503s_to_shared_state_and_200s_to_search_then_recovers(
    replicas: tuple[str, str], redis_up: RedisServer
) -> None:
    a, b = replicas
    headers = shopper()
    session_id = new_session(a, headers)
    stream_ended = threading.Event()

    def follow() -> None:  # an open stream on B ends (not hangs) when Redis goes
        with httpx.stream(
            "GET", f"{b}/v1/sessions/{session_id}/stream", headers=headers, timeout=TIMEOUT
        ) as r:
            EventReader(r).rest()
        stream_ended.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    redis_up.stop()

    for base in replicas:
        for method, path, body in (
            ("POST", "/v1/sessions", {}),
            ("GET", f"/v1/sessions/{session_id}", None),
            ("POST", f"/v1/sessions/{session_id}/messages", {"sender": "shopper", "text": "hello?"}),
            ("POST", "/v1/events", {"type": "click", "item_id": "item-0001"}),
            ("GET", "/v1/stats", None),
        ):
            extra = ADMIN if path == "/v1/stats" else {}
            answer = httpx.request(
                method, f"{base}{path}", json=body, headers={**headers, **extra}, timeout=TIMEOUT
            )
            assert answer.status_code == 503, (base, path, answer.status_code, answer.text)
            assert answer.json()["code"] == "shared_state_unavailable"
            assert int(answer.headers["Retry-After"]) >= 1
        assert search(base, shopper()).status_code == 200  # rate limits fall back to this replica's
        assert ready(base)["shared_state"] == "down"
    assert stream_ended.wait(15), "the open event stream did not end when Redis went away"

    redis_up.start()  # an empty Redis on the same port, as after a crash without persistence
    wait_until(lambda: all(ready(base).get("shared_state") == "up" for base in replicas), 15, "reconnect")
    again = new_session(b, headers)
    assert httpx.get(f"{a}/v1/sessions/{again}", headers=headers, timeout=TIMEOUT).status_code == 200
    assert httpx.get(f"{a}/v1/stats", headers={**ADMIN, **shopper()}, timeout=TIMEOUT).status_code == 200
