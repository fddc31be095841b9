"""RateLimit-Policy and RateLimit headers (IETF draft-ietf-httpapi-ratelimit-headers) on every answer of a
rate-limited route, the 429 included, for the tightest bucket; none when rate limiting is off."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Headers
from pydantic import SecretStr

from search.settings import Settings
from service.access import SEARCH_PATH, RateLimiter, install_access_control
from service.app import create_app
from tests.helpers import garment_image, jpeg_bytes

SHOP_KEY = "ratelimit-shop-key-0123456789"
RATELIMIT = re.compile(r'"(?P<name>\w+)";r=(?P<r>\d+);t=(?P<t>\d+)')


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def remaining(headers: Headers) -> tuple[str, int, int]:
    found = RATELIMIT.fullmatch(headers["RateLimit"])
    assert found, headers
    return found["name"], int(found["r"]), int(found["t"])


def test_searches_count_down_to_the_429_in_the_headers(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_s": 0.5, "rate_limit_burst": 4})
    image = {"image": ("a.jpg", jpeg_bytes(garment_image(2)), "image/jpeg")}
    with TestClient(create_app(limited)) as client:
        answers = [client.post("/v1/search", files=image) for _ in range(5)]
        health = client.get("/healthz")
    assert [answer.status_code for answer in answers] == [200] * 4 + [429]
    # burst 4, one token every 2 s: empty to full in 8 s
    assert {answer.headers["RateLimit-Policy"] for answer in answers} == {'"address";q=4;w=8'}
    counts = [remaining(answer.headers) for answer in answers]
    assert [name for name, _, _ in counts] == ["address"] * 5
    assert [r for _, r, _ in counts] == [3, 2, 1, 0, 0]  # each search takes a whole token
    assert counts[0][2] == 2 and all(1 <= t <= 8 for _, _, t in counts)
    refused = answers[-1]
    assert refused.json()["code"] == "rate_limited" and 1 <= int(refused.headers["Retry-After"]) <= 2
    assert "RateLimit" not in health.headers and "RateLimit-Policy" not in health.headers  # not limited


def test_no_headers_when_rate_limiting_is_off(client: TestClient) -> None:
    answers = [client.get("/v1/items/item-0001"), client.get("/v1/items/no-such-item")]
    assert [answer.status_code for answer in answers] == [200, 404]
    for answer in answers:
        assert "RateLimit" not in answer.headers and "RateLimit-Policy" not in answer.headers


def test_cors_exposes_the_headers(settings: Settings) -> None:
    shop = "https://shop.example"
    configured = settings.model_copy(update={"cors_origins": [shop], "rate_limit_per_s": 1.0})
    with TestClient(create_app(configured)) as client:
        answer = client.get("/v1/items/item-0001", headers={"Origin": shop})
    exposed = {name.strip().lower() for name in answer.headers["access-control-expose-headers"].split(",")}
    assert {"ratelimit", "ratelimit-policy", "retry-after"} <= exposed
    assert answer.headers["RateLimit-Policy"].startswith('"address";')


def keyed_app(clock: FakeClock) -> FastAPI:
    """The access middleware alone: a storefront key whose bucket is 1.5 addresses' worth (burst 3, 1.5/s)
    over per-address buckets of burst 2 at 1/s, on a fake clock."""
    app = FastAPI()
    limiter = RateLimiter(rate_per_s=1, burst=2, clock=clock)
    install_access_control(app, None, [SecretStr(SHOP_KEY)], limiter, key_multiple=1.5)

    @app.get(SEARCH_PATH)
    def searched() -> str:
        return "ok"

    return app


def test_the_tightest_bucket_is_described() -> None:
    clock = FakeClock()
    app = keyed_app(clock)
    key = {"X-API-Key": SHOP_KEY}

    def shopper(n: int) -> TestClient:
        return TestClient(app, client=(f"203.0.113.{n}", 4000))

    first = shopper(1).get(SEARCH_PATH, headers=key)  # address 1 of 2 left, key 2 of 3
    assert first.headers["RateLimit-Policy"] == '"address";q=2;w=2'
    assert first.headers["RateLimit"] == '"address";r=1;t=1'
    shopper(2).get(SEARCH_PATH, headers=key)
    third = shopper(3).get(SEARCH_PATH, headers=key)  # the shop's key is now the tighter: none left
    assert third.status_code == 200
    assert third.headers["RateLimit-Policy"] == '"key";q=3;w=2'
    assert third.headers["RateLimit"] == '"key";r=0;t=2'
    refused = shopper(4).get(SEARCH_PATH, headers=key)  # a fresh address, refused by the key's bucket
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit-Policy"] == '"key";q=3;w=2'
    assert refused.headers["RateLimit"] == '"key";r=0;t=2'
    clock.now += 2
    refilled = shopper(4).get(SEARCH_PATH, headers=key)
    assert refilled.status_code == 200 and refilled.headers["RateLimit"] == '"address";r=1;t=1'


def test_a_wrong_key_is_answered_with_its_addresss_bucket() -> None:
    clock = FakeClock()
    guesser = TestClient(keyed_app(clock), client=("198.51.100.7", 4000))
    answers = [guesser.get(SEARCH_PATH, headers={"X-API-Key": f"guess-{n}"}) for n in range(3)]
    assert [answer.status_code for answer in answers] == [401, 401, 429]
    assert [answer.headers["RateLimit"] for answer in answers] == [
        '"address";r=1;t=1',
        '"address";r=0;t=2',
        '"address";r=0;t=2',
    ]
    assert "198.51.100.7" not in repr(answers[-1].headers)  # the bucket's kind, never whose it is
