"""The paging cache shared by replicas (service/query_cache_redis.py, search/query_codec.py): a search kept by
one replica pages the same on another, over a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from search.errors import QueryNotFoundError
from search.query_cache import QueryCache
from search.query_codec import decode_query, encode_query
from search.settings import Settings
from service.app import create_app
from service.errors import SharedStateUnavailableError
from service.query_cache_redis import SharedQueryCache
from service.shared_state import RedisState
from tests.redis_server import RedisServer


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    with TestClient(application):
        yield application


def searched(app: FastAPI, item_id: str = "item-0003") -> str:
    """The query id of a search by catalogue item, with text, kept in the app's (in-process) cache. The app
    is running (the fixture's client): a second `with TestClient` would shut it down on leaving."""
    client = TestClient(app)
    answer = client.post("/v1/search", json={"item_id": item_id, "top_k": 3, "text": "not striped"})
    assert answer.status_code == 200, answer.text
    query_id: str = answer.json()["query_id"]
    return query_id


def pages(entry, k: int = 30):
    return [matches.pool.page(0, k) for matches in entry.result.garments if matches.pool is not None]


def test_a_kept_search_survives_its_encoding(app: FastAPI) -> None:
    entry = app.state.query_cache.get(searched(app))
    blob = encode_query(entry)
    decoded = decode_query(blob, app.state.searcher.store.item, entry.expires_at)
    assert len(blob) < 20_000  # a few KB: items by id, no pixels
    assert pages(decoded) == pages(entry) and len(pages(entry)[0]) > 3
    assert decoded.result.garments[0].refinement == entry.result.garments[0].refinement
    assert decoded.result.garments[0].attributes == entry.result.garments[0].attributes
    assert (decoded.image_size, decoded.build, decoded.result.query_item) == (
        entry.image_size,
        entry.build,
        entry.result.query_item,
    )
    with pytest.raises(ValueError, match="not a kept search"):
        decode_query(b"\x00garbage", app.state.searcher.store.item, 0.0)


def test_items_gone_from_the_index_leave_the_pool(app: FastAPI) -> None:
    entry = app.state.query_cache.get(searched(app))
    store = app.state.searcher.store
    gone = entry.result.garments[0].pool.candidates[1].item.item_id
    decoded = decode_query(encode_query(entry), lambda i: None if i == gone else store.item(i), 0.0)
    pool = decoded.result.garments[0].pool
    assert gone not in [c.item.item_id for c in pool.candidates]
    assert len(pool.candidates) == len(pool.scores) == len(entry.result.garments[0].pool.candidates) - 1


def test_a_search_kept_on_one_replica_pages_on_another(app: FastAPI, redis_server: RedisServer) -> None:
    entry = app.state.query_cache.get(searched(app))
    lookup = lambda: app.state.searcher.store.item  # noqa: E731
    a = SharedQueryCache(RedisState(redis_server.url, "t", 0.5), QueryCache(600, 10), lookup)
    b = SharedQueryCache(RedisState(redis_server.url, "t", 0.5), QueryCache(600, 10), lookup)
    query_id = a.put(entry.result, entry.image_size, entry.build)
    assert pages(b.get(query_id)) == pages(entry)
    assert 590 <= redis_server_ttl(redis_server, query_id) <= 600
    with pytest.raises(QueryNotFoundError):
        b.get("q_unknown")
    redis_server.stop()
    assert pages(a.get(query_id)) == pages(entry)  # the replica that answered still has it
    started = time.monotonic()
    with pytest.raises(SharedStateUnavailableError):
        b.get(query_id)  # a 503 to retry, not a wrong "unknown query"
    assert time.monotonic() - started < 2
    kept_while_down = a.put(entry.result, entry.image_size, entry.build)  # the search itself still answers
    assert pages(a.get(kept_while_down)) == pages(entry)


def redis_server_ttl(server: RedisServer, query_id: str) -> int:
    ttl: int = RedisState(server.url, "t", 0.5).sync.ttl(f"t:query:{query_id}")
    return ttl
