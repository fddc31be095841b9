"""The Redis-backed rate limits and shopper statistics (service/rate_limits_redis.py,
service/signals_redis.py) over a real redis-server: two instances are two replicas."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.access import Charge, Quota, RateLimiter
from service.errors import SharedStateUnavailableError
from service.rate_limits_redis import RedisRateLimiter
from service.shared_state import RedisState
from service.signals import ShopperSignals
from service.signals_redis import RedisShopperSignals
from tests.redis_server import RedisServer

CATEGORIES = ["top", "skirt"]


def replica(server: RedisServer) -> RedisState:
    return RedisState(server.url, "test", timeout_s=0.5)


def limiter(state: RedisState, rate_per_s: float = 0.01, burst: int = 5) -> RedisRateLimiter:
    return RedisRateLimiter(state, rate_per_s, burst, fallback=RateLimiter(rate_per_s, burst))


def test_a_burst_split_across_replicas_drains_one_bucket(redis_server: RedisServer) -> None:
    a, b = limiter(replica(redis_server)), limiter(replica(redis_server))
    answers = [(a if i % 2 else b).admit([Charge("addr:1.2.3.4")]) for i in range(6)]
    assert [quota.wait_s == 0 for quota in answers if quota] == [True] * 5 + [False]
    assert answers[4] is not None and answers[4].tokens == pytest.approx(0, abs=0.01)
    assert answers[5] is not None and answers[5].wait_s == pytest.approx(100, rel=0.05)  # 1 token at 0.01/s
    other = a.admit([Charge("addr:5.6.7.8")])  # another address has its own bucket
    assert other is not None and other.wait_s == 0 and other.tokens == pytest.approx(4)


def test_shared_buckets_answer_like_the_in_process_ones(redis_server: RedisServer) -> None:
    """All or nothing, fractional costs and scaled buckets, step by step as the in-process RateLimiter."""
    shared, local = limiter(replica(redis_server), burst=3), RateLimiter(0.01, 3)
    steps = [
        [Charge("addr:a", 1.0), Charge("key:k", 1.0, 20.0)],
        [Charge("addr:a", 0.2)],
        [Charge("addr:a", 1.0), Charge("session:s", 1.0)],
        [Charge("addr:a", 1.0), Charge("session:s", 1.0)],  # refused: addr has 0.8
        [Charge("addr:a", 0.2), Charge("session:s", 0.2)],  # allowed: nothing was taken by the refusal
        [Charge("addr:a", 0.6)],
        [Charge("addr:a", 0.2)],  # refused
    ]
    for charges in steps:
        got, want = shared.admit(charges), local.admit(charges)
        assert got is not None and want is not None
        assert (got.name, got.capacity, got.rate_per_s) == (want.name, want.capacity, want.rate_per_s)
        assert got.tokens == pytest.approx(want.tokens, abs=0.01)
        assert (got.wait_s > 0) == (want.wait_s > 0)
        assert got.headers() == want.headers()


def test_the_event_loop_form_shares_the_same_buckets(redis_server: RedisServer) -> None:
    state = replica(redis_server)
    shared = limiter(state, burst=2)

    async def admit_three() -> list[Quota | None]:
        first = await shared.admit_async([Charge("addr:x")])
        second = shared.admit([Charge("addr:x")])
        third = await shared.admit_async([Charge("addr:x")])
        await state.aclose()
        return [first, second, third]

    first, second, third = asyncio.run(admit_three())
    assert first is not None and second is not None and third is not None
    assert (first.wait_s, second.wait_s) == (0, 0) and third.wait_s > 0


def test_buckets_expire_when_they_would_be_full_again(redis_server: RedisServer) -> None:
    state = replica(redis_server)
    limiter(state, rate_per_s=2.0, burst=4).admit([Charge("addr:y", 1.0)])  # full again in 0.5 s
    ttl_ms = state.sync.pttl(state.key("rate", "addr:y"))
    assert 500 <= ttl_ms <= 1500
    time.sleep(ttl_ms / 1000 + 0.1)
    assert state.sync.exists(state.key("rate", "addr:y")) == 0


def test_with_redis_down_the_replica_limits_on_its_own(redis_server: RedisServer) -> None:
    shared = limiter(replica(redis_server), burst=2)
    redis_server.stop()
    started = time.monotonic()
    answers = [shared.admit([Charge("addr:z")]) for _ in range(3)]
    assert time.monotonic() - started < 2
    assert [quota.wait_s == 0 for quota in answers if quota] == [True, True, False]
    redis_server.start()


def test_statistics_of_replicas_sum_and_outlive_them(redis_server: RedisServer) -> None:
    a = RedisShopperSignals(replica(redis_server), lambda: CATEGORIES)
    b = RedisShopperSignals(replica(redis_server), lambda: CATEGORIES)
    a.record_search(["top", "skirt", "hat"])
    b.record_search(["top"])
    a.record_event("click", "top")
    b.record_event("add_to_cart", "top")
    b.record_event("click", "nonsense")
    restarted = RedisShopperSignals(replica(redis_server), lambda: CATEGORIES)
    stats = restarted.stats()
    assert stats.totals.model_dump() == {
        "searches": 2,
        "garments": 4,
        "clicks": 2,
        "add_to_cart": 1,
        "click_through": 1.0,
    }
    assert stats.by_category["top"].searches == 2 and stats.by_category["top"].clicks == 1
    assert stats.by_category["other"].searches == 1 and stats.by_category["other"].clicks == 1
    assert stats.since == a.stats().since  # the first replica's start, kept
    local = ShopperSignals(lambda: CATEGORIES)  # the same counts as one process would have
    local.record_search(["top", "skirt", "hat"])
    local.record_search(["top"])
    local.record_event("click", "top")
    local.record_event("add_to_cart", "top")
    local.record_event("click", "nonsense")
    assert local.stats().model_dump(exclude={"since"}) == stats.model_dump(exclude={"since"})
    assert restarted._state.sync.ttl(restarted._state.key("stats")) > 0


def test_with_redis_down_searches_still_count_nothing_and_events_fail_clearly(
    redis_server: RedisServer,
) -> None:
    signals = RedisShopperSignals(replica(redis_server), lambda: CATEGORIES)
    redis_server.stop()
    signals.record_search(["top"])  # a search never fails for its statistics
    with pytest.raises(SharedStateUnavailableError) as refused:
        signals.record_event("click", "top")
    assert refused.value.retry_after_s >= 1
    with pytest.raises(SharedStateUnavailableError):
        signals.stats()
    redis_server.start()
    time.sleep(1.1)  # past RedisState's fail-fast window
    signals.record_event("click", "top")
    assert signals.stats().totals.clicks == 1


def test_redis_down_fails_fast_and_recovers_by_itself(redis_server: RedisServer) -> None:
    state = replica(redis_server)
    assert state.ping() and state.up
    redis_server.stop()
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(SharedStateUnavailableError):
            state.call(state.sync.get, state.key("x"))
    assert time.monotonic() - started < 1.5 and not state.up
    redis_server.start()
    time.sleep(1.1)
    assert state.call(state.sync.set, state.key("x"), "1") and state.up
