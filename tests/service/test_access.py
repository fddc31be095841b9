"""Keys, rate limits and CORS: enforced before any body is read; keys never logged."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from search.settings import Settings
from service.access import (
    KEY_MULTIPLE,
    SEARCH_PATH,
    Charge,
    RateLimiter,
    charges_for,
    client_address,
    install_access_control,
    key_matches,
    parse_address,
    parse_networks,
)
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


def test_rate_limiter_charges_every_bucket_or_none() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1, burst=2, clock=clock)
    shopper, abuser = Charge("addr:a"), Charge("addr:b")
    shop = Charge("key:shop", scale=3)  # the key's bucket: 3 addresses' worth (burst 6, 3/s)
    assert [limiter.take_all([abuser, shop]) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take_all([abuser, shop]) == pytest.approx(1.0)  # the abuser's own bucket is empty...
    assert [limiter.take_all([abuser, shop]) > 0 for _ in range(50)] == [True] * 50
    assert [limiter.take_all([shopper, shop]) for _ in range(2)] == [
        0.0,
        0.0,
    ]  # ...and refusals cost the key none
    for name in "cd":
        assert limiter.take_all([Charge(f"addr:{name}"), shop]) == 0.0
    assert limiter.take_all([Charge("addr:e"), shop]) == pytest.approx(1 / 3)  # the key's cap: 6 at once
    assert limiter.take_all([Charge("addr:f")]) == 0.0 and "addr:e" not in limiter._buckets  # none created
    clock.now += 1 / 3
    assert limiter.take_all([Charge("addr:e"), shop]) == 0.0  # the key refills at 3/s


def test_a_refused_caller_is_not_dropped_for_a_fresh_bucket() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, max_callers=3, clock=FakeClock())
    assert limiter.take("addr:abuser") == 0.0
    for other in range(10):
        assert limiter.take("addr:abuser") > 0  # still refused: its bucket stays the most recent
        limiter.take(f"addr:{other}")
    assert limiter.take("addr:abuser") > 0


def test_a_request_pays_its_address_its_key_and_its_session() -> None:
    session_id = "S" * 43
    search = charges_for("/v1/search", "10.0.0.1", "shop-key", 1.0)
    assert [c.bucket.split(":")[0] for c in search] == ["addr", "key"]
    assert search[0] == Charge("addr:10.0.0.1", 1.0, 1.0) and search[1].scale == KEY_MULTIPLE
    assert "shop-key" not in str(search)  # a fingerprint, never the key
    message = charges_for(f"/v1/sessions/{session_id}/messages", "10.0.0.1", None, 0.2)
    assert [(c.bucket.split(":")[0], c.cost) for c in message] == [("addr", 0.2), ("session", 0.2)]
    assert session_id not in str(message)
    assert len(charges_for(f"/v1/sessions/{session_id}", "a", None, 0.2)) == 2
    assert len(charges_for("/v1/sessions/made-up-id/stream", "a", None, 0.2)) == 1  # not ours: no bucket
    assert len(charges_for("/v1/search", "a", "shop-key", 1.0, key_multiple=0)) == 1  # no key-level cap


PROXIES = parse_networks(["10.0.0.0/8", "192.0.2.7", "fd00::/8"])


def test_forwarded_for_counts_only_from_a_trusted_proxy() -> None:
    forged = ["203.0.113.9, 198.51.100.1"]
    assert client_address("198.51.100.50", forged, PROXIES) == "198.51.100.50"  # untrusted peer: ignored
    assert client_address("198.51.100.50", forged) == "198.51.100.50"  # no trusted proxies: ignored
    assert client_address("127.0.0.1", forged) == "127.0.0.1"  # not even from loopback
    assert client_address("10.1.2.3", forged, PROXIES) == "198.51.100.1"  # the right-most untrusted entry
    # A proxy chain: the client's own entries (left) are skipped over as soon as one hop is untrusted.
    chain = ["1.1.1.1, 203.0.113.9", "192.0.2.7 , 10.9.9.9"]  # two header lines, in order
    assert client_address("10.0.0.1", chain, PROXIES) == "203.0.113.9"
    assert client_address("10.0.0.1", ["203.0.113.9:4711"], PROXIES) == "203.0.113.9"  # with a port
    assert client_address("10.0.0.1", ["[2001:db8::1]:443"], PROXIES) == "2001:db8::/64"
    assert client_address("10.0.0.1", ["::ffff:203.0.113.9"], PROXIES) == "203.0.113.9"


def test_malformed_forwarded_for_never_names_a_fresh_client() -> None:
    for header in (["garbage"], ["203.0.113.9, unknown"], ["1.2.3.4, , 10.0.0.9"], ["999.1.1.1"], [""]):
        found = client_address("10.0.0.1", header, PROXIES)
        assert found in ("10.0.0.1", "10.0.0.9"), header  # the last trusted hop, not the client's word
    assert client_address("10.0.0.1", [], PROXIES) == "10.0.0.1"  # from the proxy itself
    assert client_address("10.0.0.1", ["10.0.0.2"], PROXIES) == "10.0.0.2"  # only proxies: the farthest
    assert client_address("testclient", ["1.2.3.4"], PROXIES) == "testclient"
    assert client_address(None, ["1.2.3.4"], PROXIES) == "unknown"
    assert parse_address("1.2.3.4") == ipaddress.ip_address("1.2.3.4")
    assert [parse_address(t) for t in ("", "[::1", "1.2.3.4:x:y", "not an ip", "1.2.3")] == [None] * 5
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        parse_networks(["10.0.0.0/33"])


def test_an_ipv6_client_is_its_64_network() -> None:
    first = client_address("2001:db8:0:1::1", [])
    assert first == client_address("2001:db8:0:1:ffff::2", []) == "2001:db8:0:1::/64"
    assert first != client_address("2001:db8:0:2::1", [])


def test_trusted_proxies_setting_is_validated(settings: Settings) -> None:
    assert Settings(**{**settings.model_dump(), "trusted_proxies": ["10.0.0.0/8", "::1"]}).trusted_proxies
    with pytest.raises(ValidationError, match="'proxy.example'"):
        Settings(**{**settings.model_dump(), "trusted_proxies": ["proxy.example"]})


def addressed_app(trusted_proxies: list[str]) -> FastAPI:
    """Only the access middleware, rate limited (burst 2), and a route that says whom it saw (at the search
    path: a whole token a request)."""
    app = FastAPI()
    install_access_control(app, None, [], RateLimiter(1, 2), trusted_proxies=trusted_proxies)

    @app.get(SEARCH_PATH)
    def whoami(request: Request) -> str:
        return str(request.state.client_address)

    return app


def test_forged_forwarded_for_from_an_untrusted_peer_gets_no_fresh_bucket() -> None:
    client = TestClient(addressed_app([]), client=("198.51.100.50", 4000))
    answers = [client.get(SEARCH_PATH, headers={"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert {a.json() for a in answers[:2]} == {"198.51.100.50"}


def test_a_trusted_proxy_forwards_each_shopper_to_their_own_bucket() -> None:
    proxy = TestClient(addressed_app(["10.0.0.0/8"]), client=("10.0.0.1", 4000))
    shopper = {"X-Forwarded-For": "1.2.3.4, 203.0.113.1"}  # "1.2.3.4" is what the shopper claimed
    answers = [proxy.get(SEARCH_PATH, headers=shopper) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].json() == "203.0.113.1"
    other = proxy.get(SEARCH_PATH, headers={"X-Forwarded-For": "203.0.113.2"})
    assert other.status_code == 200 and other.json() == "203.0.113.2"


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


def test_rate_limit_answers_429_with_retry_after_per_address(keyed: Settings) -> None:
    image = {"image": ("a.jpg", jpeg_bytes(garment_image(1)), "image/jpeg")}
    app = create_app(keyed)
    with TestClient(app, client=("203.0.113.1", 5000)) as client:
        # Other addresses: clients without the lifespan of their own (the app's state is shared).
        same_key_elsewhere = TestClient(app, client=("203.0.113.2", 5000))
        guesser = TestClient(app, client=("203.0.113.3", 5000))
        shop_a = {"X-API-Key": SHOP_KEYS[0]}
        # a search takes a whole token (burst 4); other /v1 requests take 0.2
        codes = [client.post("/v1/search", files=image, headers=shop_a).status_code for _ in range(6)]
        limited = client.post("/v1/search", files=image, headers=shop_a)
        other_key = client.get("/v1/items/item-0001", headers={"X-API-Key": SHOP_KEYS[1]})
        other_shopper = same_key_elsewhere.post("/v1/search", files=image, headers=shop_a)
        health = client.get("/healthz")
        guesses = [
            guesser.get("/v1/items/x", headers={"X-API-Key": f"guess-{n}"}).status_code for n in range(6)
        ]
    assert codes == [200] * 4 + [429] * 2
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) in (1, 2)
    assert other_key.status_code == 429  # the address's bucket, whatever the key
    assert other_shopper.status_code == 200  # the shop's key is not used up by one of its shoppers
    assert health.status_code == 200
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
    problem = search["responses"]["415"]["content"]["application/problem+json"]
    assert problem["schema"]["$ref"].endswith("/ErrorOut")
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
