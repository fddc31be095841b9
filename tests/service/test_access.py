"""Keys, rate limits and CORS: enforced before any body is read; keys never logged."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from search.settings import Settings
from service.access import RateLimiter, key_matches
from service.app import create_app
from tests.helpers import garment_image, jpeg_bytes

ADMIN_KEY = "admin-key-0123456789abcdef"
SHOP_KEYS = ["shop-a-key-0123456789", "shop-b-key-0123456789"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token every 0.5 s
    assert limiter.take("b") == 0.0  # buckets are per caller
    clock.now += 0.5
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    clock.now += 60
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refills to the burst, no more
    assert limiter.take("a") > 0


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, max_callers=100)
    for caller in range(1000):
        limiter.take(f"addr:{caller}")
    assert len(limiter) == 100


def test_key_matches_only_configured_keys() -> None:
    keys = [SecretStr(k) for k in SHOP_KEYS]
    assert key_matches(SHOP_KEYS[1], keys) and not key_matches(SHOP_KEYS[1][:-1], keys)
    assert not key_matches("", keys) and not key_matches("x", [])
    assert not key_matches("\udcff", keys)  # undecodable header bytes are simply wrong


def test_short_or_malformed_keys_refuse_to_load(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="admin_key"):
        Settings(**{**settings.model_dump(), "admin_key": "short"})
    with pytest.raises(ValidationError, match="search key #2"):
        Settings(**{**settings.model_dump(), "search_keys": [SHOP_KEYS[0], "tiny"]})


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "admin_key": SecretStr(ADMIN_KEY),
            "search_keys": [SecretStr(k) for k in SHOP_KEYS],
            "rate_limit_per_s": 0.5,
            "rate_limit_burst": 4,
        }
    )


def test_search_needs_a_storefront_key_when_configured(
    keyed: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    image = {"image": ("a.jpg", jpeg_bytes(garment_image(3)), "image/jpeg")}
    with TestClient(create_app(keyed)) as client:
        missing = client.post("/v1/search", files=image)
        wrong = client.get("/v1/items/item-0001", headers={"X-API-Key": SHOP_KEYS[0] + "x"})
        right = client.post("/v1/search", files=image, headers={"X-API-Key": SHOP_KEYS[1]})
        open_routes = [client.get(path).status_code for path in ("/healthz", "/readyz", "/metrics")]
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"] == "X-API-Key"
    assert wrong.status_code == 401
    assert right.status_code == 200, right.text
    assert open_routes == [200, 200, 200]
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert all(key not in logged for key in [*SHOP_KEYS, ADMIN_KEY])


def test_admin_api_needs_the_admin_key_and_is_off_without_one(keyed: Settings, settings: Settings) -> None:
    with TestClient(create_app(keyed)) as client:
        shop_key = client.post("/v1/admin/reload", headers={"X-Admin-Key": SHOP_KEYS[0]})
        as_api_key = client.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY})
        admin = client.post("/v1/admin/reload", headers={"X-Admin-Key": ADMIN_KEY})
    assert shop_key.status_code == 401 and as_api_key.status_code == 401
    assert admin.status_code == 200 and admin.json()["changed"] is False
    with TestClient(create_app(settings)) as client:
        off = client.post("/v1/admin/reload", headers={"X-Admin-Key": ADMIN_KEY})
    assert off.status_code == 403 and off.json()["code"] == "admin_disabled"


def test_rate_limit_answers_429_with_retry_after_per_key(keyed: Settings) -> None:
    image = {"image": ("a.jpg", jpeg_bytes(garment_image(1)), "image/jpeg")}
    with TestClient(create_app(keyed)) as client:
        shop_a = {"X-API-Key": SHOP_KEYS[0]}
        # a search takes a whole token (burst 4); other /v1 requests take 0.2
        codes = [client.post("/v1/search", files=image, headers=shop_a).status_code for _ in range(6)]
        limited = client.post("/v1/search", files=image, headers=shop_a)
        other_key = client.get("/v1/items/item-0001", headers={"X-API-Key": SHOP_KEYS[1]})
        health = client.get("/healthz")
        guesses = [
            client.get("/v1/items/x", headers={"X-API-Key": f"guess-{n}"}).status_code for n in range(6)
        ]
    assert codes == [200] * 4 + [429] * 2
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) in (1, 2)
    assert other_key.status_code == 200 and health.status_code == 200
    assert guesses == [401] * 4 + [429] * 2  # wrong keys share their address's bucket


def test_rate_limit_off_with_zero(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"rate_limit_burst": 1}))) as client:
        assert {client.get("/v1/items/item-0001").status_code for _ in range(10)} == {200}


def test_cors_allows_only_configured_origins(settings: Settings) -> None:
    shop = "https://shop.example"
    configured = settings.model_copy(update={"cors_origins": [shop]})
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    with TestClient(create_app(configured)) as client:
        allowed = client.options("/v1/search", headers={"Origin": shop, **preflight})
        denied = client.options("/v1/search", headers={"Origin": "https://evil.example", **preflight})
        simple = client.get("/v1/items/item-0001", headers={"Origin": shop})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == shop
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in denied.headers
    assert simple.headers["access-control-allow-origin"] == shop
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    with TestClient(create_app(settings)) as client:
        none = client.get("/v1/items/item-0001", headers={"Origin": shop})
    assert "access-control-allow-origin" not in none.headers


def test_openapi_declares_keys_and_error_bodies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {"X-API-Key", "X-Admin-Key"}
    search = schema["paths"]["/v1/search"]["post"]
    assert {"401", "413", "415", "422", "429", "503"} <= set(search["responses"])
    assert search["responses"]["415"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert search["security"] and schema["paths"]["/v1/admin/reload"]["post"]["security"]


def test_malformed_multipart_is_a_clear_400(client: TestClient) -> None:
    response = client.post(
        "/v1/search",
        content=b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\nunterminated',
        headers={"content-type": "multipart/form-data"},  # no boundary
    )
    assert (response.status_code, response.json()["code"]) == (400, "bad_request"), response.text


def test_access_refusals_come_from_the_one_error_table() -> None:
    """The middleware's 401, 403 and 429 are domain errors mapped by ERROR_TABLE like every other answer."""
    from service.errors import AdminDisabledError, RateLimitedError, UnauthorizedError, lookup

    assert lookup(UnauthorizedError("X-API-Key")) == (401, "unauthorized")
    assert lookup(AdminDisabledError("off")) == (403, "admin_disabled")
    assert lookup(RateLimitedError("slow down", 2)) == (429, "rate_limited")
