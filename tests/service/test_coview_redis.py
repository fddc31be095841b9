"""Co-viewing sessions in Redis (service/coview_redis.py) over a real redis-server: two stores, or two apps,
sharing one Redis are two replicas."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from search.responses import SearchResponse
from search.settings import Settings
from service.app import create_app
from service.coview import MAX_STREAMS
from service.coview_redis import RedisSessionStore
from service.coview_session import MAX_MESSAGES, Subscriber
from service.errors import (
    SessionNotFoundError,
    SessionsFullError,
    SharedStateUnavailableError,
    TooManySessionsError,
    TooManyStreamsError,
)
from service.shared_state import RedisState
from service.shop_schemas import SessionSnapshot
from tests.redis_server import RedisServer

T = TypeVar("T")
NO_SEARCH = SearchResponse(garments=[], image_size=[1, 1], timings_ms={})


def replica(server: RedisServer, ttl_s: float = 60, max_sessions: int = 10) -> RedisSessionStore:
    return RedisSessionStore(RedisState(server.url, "test", timeout_s=0.5), ttl_s, 600, max_sessions, 0.1)


def with_replicas(server: RedisServer, main: Callable[..., Awaitable[T]], **options: Any) -> T:
    """Run `main(a, b)` with two started replicas on one event loop (as the lifespan starts them)."""

    async def run() -> T:
        a, b = replica(server, **options), replica(server, **options)
        await a.start()
        await b.start()
        try:
            return await main(a, b)
        finally:
            for store in (a, b):
                store.close_streams()
                await store.aclose()

    return asyncio.run(run())


async def open_stream(store: RedisSessionStore, session_id: str) -> tuple[Subscriber, str]:
    return await asyncio.to_thread(store.subscribe, session_id, asyncio.get_running_loop())


async def read(frames: AsyncIterator[str], count: int | None = None) -> list[str]:
    """The stream's next `count` events (pings left out), or all of them until it ends."""
    found: list[str] = []
    async for frame in frames:
        if not frame.startswith(":"):
            found.append(frame)
        if len(found) == count:
            break
    return found


def names(frames: list[str]) -> list[str]:
    return [frame.split("\n")[0].removeprefix("event: ") for frame in frames]


def ids(frames: list[str]) -> list[int]:
    return [int(re.search(r'"id":(\d+)', frame).group(1)) for frame in frames]  # type: ignore[union-attr]


def test_a_session_made_on_one_replica_is_changed_and_streamed_on_the_other(
    redis_server: RedisServer,
) -> None:
    async def main(a: RedisSessionStore, b: RedisSessionStore) -> None:
        session_id = a.create().session_id
        b.add_message(session_id, "shopper", 'quotes " and ünïcode')
        subscriber, first = await open_stream(a, session_id)
        reader = asyncio.create_task(read(a.frames(subscriber, first), 6))
        await asyncio.to_thread(b.add_message, session_id, "assistant", "from b")
        await asyncio.to_thread(b.add_activity, session_id, "select_garment", None, None, 2)
        assert await asyncio.to_thread(b.attach_search, session_id, b"jpeg", NO_SEARCH)
        await asyncio.to_thread(a.add_message, session_id, "shopper", "from a")
        frames = await asyncio.wait_for(reader, 5)
        assert names(frames) == ["snapshot", "message", "activity", "insight", "search", "message"]
        assert 'quotes \\" and ünïcode' in frames[0] and '"text":"from b"' in frames[1]
        assert f'"photo_url":"/v1/sessions/{session_id}/photo?v=1"' in frames[4]
        snapshot = SessionSnapshot.model_validate_json(a.snapshot(session_id))
        assert [m.id for m in snapshot.messages] == [1, 2, 3] and snapshot.selected is None
        assert snapshot.search is not None and a.photo(session_id) == b"jpeg"
        assert b.snapshot(session_id) == a.snapshot(session_id)

    with_replicas(redis_server, main)


def test_changes_from_both_replicas_reach_streams_on_both_once_in_order(redis_server: RedisServer) -> None:
    async def main(a: RedisSessionStore, b: RedisSessionStore) -> None:
        session_id = a.create().session_id
        streams = [await open_stream(store, session_id) for store in (a, b, a)]
        readers = [
            asyncio.create_task(read(store.frames(*stream), 81))
            for store, stream in zip((a, b, a), streams, strict=True)
        ]

        def post(store: RedisSessionStore) -> None:
            for n in range(20):
                store.add_message(session_id, "shopper", f"m{n}")

        await asyncio.gather(*(asyncio.to_thread(post, store) for store in (a, b, a, b)))
        for frames in await asyncio.wait_for(asyncio.gather(*readers), 10):
            assert ids(frames[1:]) == list(range(1, 81))

    with_replicas(redis_server, main)


def test_the_caps_hold_across_replicas(redis_server: RedisServer) -> None:
    async def main(a: RedisSessionStore, b: RedisSessionStore) -> None:
        made = await asyncio.gather(
            *(asyncio.to_thread(_try_create, store) for store in (a, b) * 4), return_exceptions=True
        )
        kept_ids = [m for m in made if isinstance(m, str)]
        full = [m for m in made if isinstance(m, SessionsFullError)]
        assert len(kept_ids) == 3 and len(full) == 5 and len(a) == len(b) == 3  # no more than the cap
        assert 55 <= full[0].retry_after_s <= 61  # the refused may have read the clock a little earlier
        a.max_sessions = b.max_sessions = 10
        a.create("203.0.113.1", max_per_client=2)
        b.create("203.0.113.1", max_per_client=2)
        with pytest.raises(TooManySessionsError) as refused:
            a.create("203.0.113.1", max_per_client=2)
        assert 55 <= refused.value.retry_after_s <= 60
        assert b.create("203.0.113.2", max_per_client=2)
        session_id = kept_ids[0]
        for n in range(MAX_MESSAGES + 5):
            (a if n % 2 else b).add_message(session_id, "shopper", f"message {n}")
        kept = SessionSnapshot.model_validate_json(a.snapshot(session_id)).messages
        assert [m.text for m in kept] == [f"message {n}" for n in range(5, MAX_MESSAGES + 5)]
        loop = asyncio.get_running_loop()
        streams = [await asyncio.to_thread((a, b)[n % 2].subscribe, session_id, loop) for n in range(8)]
        assert a.open_streams() == b.open_streams() == MAX_STREAMS // 2
        for store in (a, b):
            with pytest.raises(TooManyStreamsError):
                await asyncio.to_thread(store.subscribe, session_id, loop)
        await asyncio.to_thread(b.unsubscribe, streams[1][0])
        assert await asyncio.to_thread(a.subscribe, session_id, loop)

    with_replicas(redis_server, main, max_sessions=3)


def _try_create(store: RedisSessionStore) -> str:
    return store.create().session_id


def test_sessions_expire_in_redis_and_their_streams_are_told(redis_server: RedisServer) -> None:
    async def main(a: RedisSessionStore, b: RedisSessionStore) -> None:
        idle, renewed = a.create().session_id, a.create().session_id
        subscriber, first = await open_stream(a, idle)
        reader = asyncio.create_task(read(a.frames(subscriber, first)))
        await asyncio.sleep(0.6)
        b.add_message(renewed, "shopper", "still here")
        await asyncio.sleep(0.6)
        with pytest.raises(SessionNotFoundError):
            b.snapshot(idle)
        assert b.snapshot(renewed)
        assert names(await asyncio.wait_for(reader, 5)) == ["snapshot", "expired"]
        await asyncio.sleep(0.6)
        with pytest.raises(SessionNotFoundError):
            a.add_message(renewed, "shopper", "too late")
        left = [key async for key in a._state.aio.scan_iter("test:session:*")]
        assert left == [] and len(a) == 0

    with_replicas(redis_server, main, ttl_s=1)


def test_with_redis_down_sessions_fail_fast_and_come_back(redis_server: RedisServer) -> None:
    async def main(a: RedisSessionStore, b: RedisSessionStore) -> None:
        session_id = a.create().session_id
        subscriber, first = await open_stream(a, session_id)
        reader = asyncio.create_task(read(a.frames(subscriber, first)))
        redis_server.stop()
        assert names(await asyncio.wait_for(reader, 5)) == ["snapshot"]  # ended cleanly
        started = time.monotonic()
        for call in (a.create, lambda: b.snapshot(session_id), lambda: a.require(session_id)):
            with pytest.raises(SharedStateUnavailableError) as refused:
                await asyncio.to_thread(call)
            assert refused.value.retry_after_s >= 1
        with pytest.raises(SharedStateUnavailableError):
            await open_stream(b, session_id)
        assert not await asyncio.to_thread(b.attach_search, session_id, b"jpeg", NO_SEARCH)
        assert time.monotonic() - started < 3
        redis_server.start()  # empty: no persistence
        await asyncio.sleep(1.2)  # past the fail-fast window; the listeners reconnected meanwhile
        session_id = b.create().session_id
        subscriber, first = await open_stream(a, session_id)
        reader = asyncio.create_task(read(a.frames(subscriber, first), 2))
        await asyncio.to_thread(b.add_message, session_id, "shopper", "back")
        assert names(await asyncio.wait_for(reader, 5)) == ["snapshot", "message"]

    with_replicas(redis_server, main)


def test_two_apps_on_one_redis_share_sessions_and_answer_503_while_it_is_down(
    settings: Settings, redis_server: RedisServer
) -> None:
    shared = settings.model_copy(update={"redis_url": SecretStr(redis_server.url), "stream_ping_s": 0.1})
    with (
        TestClient(create_app(shared), raise_server_exceptions=False) as a,
        TestClient(create_app(shared), raise_server_exceptions=False) as b,
    ):
        assert isinstance(a.app.state.sessions, RedisSessionStore)  # type: ignore[attr-defined]
        session_id = a.post("/v1/sessions").json()["session_id"]
        posted = b.post(f"/v1/sessions/{session_id}/messages", json={"sender": "shopper", "text": "hi"})
        assert posted.status_code == 201 and posted.json()["id"] == 1
        event = {"type": "click", "item_id": "item-0001", "session_id": session_id}
        assert b.post("/v1/events", json=event).status_code == 202
        pushed = a.post(f"/v1/sessions/{session_id}/push", json={"item_id": "item-0002"})
        assert pushed.status_code == 201 and pushed.json()["id"] == 2
        body = a.get(f"/v1/sessions/{session_id}").json()
        assert [m["text"] for m in body["messages"]] == ["hi"] and body["activity"][0]["type"] == "click"
        assert b.get("/v1/sessions/never-existed").json()["code"] == "session_not_found"
        with a.stream("GET", f"/v1/sessions/{session_id}/stream") as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines) == "event: snapshot"
            b.post(f"/v1/sessions/{session_id}/messages", json={"sender": "assistant", "text": "via b"})
            following = [line for line in (next(lines) for _ in range(6)) if line.startswith("event:")]
            assert "event: message" in following
        redis_server.stop()
        for answer in (
            a.post("/v1/sessions"),
            b.get(f"/v1/sessions/{session_id}"),
            a.get(f"/v1/sessions/{session_id}/stream"),
            b.post(f"/v1/sessions/{session_id}/messages", json={"sender": "shopper", "text": "x"}),
        ):
            assert answer.status_code == 503 and answer.json()["code"] == "shared_state_unavailable"
            assert int(answer.headers["Retry-After"]) >= 1
        redis_server.start()
        time.sleep(1.2)
        assert a.post("/v1/sessions").status_code == 201


def test_the_insight_card_is_shared_and_streamed_across_replicas(redis_server: RedisServer) -> None:
    from service.shopper_insight import context_json

    async def main(a: RedisSessionStore, b: RedisSessionStore) -> None:
        session_id = a.create().session_id
        subscriber, first = await open_stream(a, session_id)
        reader = asyncio.create_task(read(a.frames(subscriber, first), 4))
        await asyncio.to_thread(b.add_activity, session_id, "add_to_cart", "item-1", "top", None)
        await asyncio.to_thread(b.set_shopper, session_id, context_json("likes navy", True))
        frames = await asyncio.wait_for(reader, 5)
        assert names(frames) == ["snapshot", "activity", "insight", "insight"]
        assert '"intent":"ready_to_buy"' in frames[2] and '"profile":"likes navy"' in frames[3]
        snapshot = SessionSnapshot.model_validate_json(a.snapshot(session_id))
        assert snapshot.insight.intent == "ready_to_buy" and snapshot.insight.returning
        assert snapshot.insight.profile == "likes navy" and snapshot.insight.cart[0].item_id == "item-1"
        assert b.snapshot(session_id) == a.snapshot(session_id)

    with_replicas(redis_server, main)
