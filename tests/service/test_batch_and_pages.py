"""Batches pay for every search they hold, and the query cache keeps pages bounded (issue 18)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from search.errors import QueryNotFoundError
from search.query_cache import QueryCache
from search.searcher import OutfitResult
from search.settings import Settings
from service.app import create_app


def batch(client: TestClient, n: int):
    requests = [{"item_id": f"item-{i:04d}", "top_k": 2} for i in range(n)]
    return client.post("/v1/search/batch", json={"requests": requests})


def test_a_batch_costs_one_request_per_search(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_s": 0.01, "rate_limit_burst": 6})
    with TestClient(create_app(limited), raise_server_exceptions=False) as client:
        first = batch(client, 4)
        assert first.status_code == 200, first.text
        assert len(first.json()["responses"]) == 4
        assert ";r=2;" in first.headers["ratelimit"]  # 6 - 4: the headers count the whole batch
        refused = batch(client, 3)  # 1 at the door leaves 1; the other 2 are not there
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        assert "batch of 3 searches" in refused.json()["message"] and refused.headers["retry-after"]


def test_a_batch_must_be_a_json_object_of_requests(client: TestClient) -> None:
    for body in ({"requests": []}, {"searches": [{"item_id": "item-0001"}]}, [{"item_id": "item-0001"}]):
        response = client.post("/v1/search/batch", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_request"
    as_form = client.post("/v1/search/batch", data={"requests": "[]"})
    assert as_form.status_code == 422 and "Content-Type: application/json" in as_form.json()["message"]


def test_the_query_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    cache = QueryCache(ttl_s=60, max_entries=2, clock=lambda: now[0])
    empty = OutfitResult([], {})
    first, second = cache.put(empty, (1, 1), "b"), cache.put(empty, (1, 1), "b")
    cache.get(first)  # used: now the most recent
    third = cache.put(empty, (1, 1), "b")
    assert len(cache) == 2 and cache.get(first) and cache.get(third)
    with pytest.raises(QueryNotFoundError, match="query_id"):
        cache.get(second)  # the least recently used entry was dropped
    now[0] = 59.0
    assert cache.get(third)  # renewed at 59
    now[0] = 100.0
    assert cache.get(third)
    now[0] = 200.0
    with pytest.raises(QueryNotFoundError, match="older than 60 s"):
        cache.get(first)  # past its time to live
