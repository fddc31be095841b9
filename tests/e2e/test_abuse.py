"""Abuse of shared resources over a real `fashion-search serve` (issue 16, items 5, 6 and 12): one client
cannot use up the shop's rate limit or the session store for every other shopper, nor post invisible text.
The abuser talks from 127.0.0.1, the other shopper from 127.0.0.2 (another loopback address: another client
to the server)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.serving import built_index, running_server, tiny_model_env
from tests.helpers import garment_image, jpeg_bytes

pytestmark = pytest.mark.slow
SHOP_KEY = "storefront-key-0123456789"  # the page's key: every shopper sends it, and anyone can read it
MAX_SESSIONS = 30
TIMEOUT = httpx.Timeout(30.0)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **tiny_model_env(tmp_path_factory.mktemp("model")),
        "FASHION_SEARCH_KEYS": f'["{SHOP_KEY}"]',
        "FASHION_MAX_SESSIONS": str(MAX_SESSIONS),  # the default rate limit: 5/s, burst 20
    }


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    return built_index(tmp_path_factory.mktemp("abuse"), 8, env)


@pytest.fixture
def server(index: Path, env: dict[str, str]) -> Iterator[str]:
    """A fresh server for each test: its buckets and sessions start empty."""
    with running_server(index, env) as base:
        yield base


def client_at(base: str, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base, transport=transport, timeout=TIMEOUT, headers={"X-API-Key": SHOP_KEY})


def search_photo() -> dict[str, tuple[str, bytes, str]]:
    return {"image": ("look.jpg", jpeg_bytes(garment_image(3)), "image/jpeg")}


JUNK = {"image": ("x.txt", b"not an image", "application/octet-stream")}  # a 415, after a whole token


def hammer(client: httpx.Client, stop: threading.Event, codes: Counter[int], **request: object) -> None:
    while not stop.is_set():
        codes[client.post("/v1/search", **request).status_code] += 1  # type: ignore[arg-type]


def while_abused(base: str, **abuse: object) -> tuple[Counter[int], Counter[int]]:
    """What one abuser at 127.0.0.1 gets while it hammers `/v1/search` with `abuse`, and what a shopper at
    127.0.0.2 gets for 10 searches meanwhile (after the abuser had a head start of 40 requests)."""
    abused: Counter[int] = Counter()
    shopper_codes: Counter[int] = Counter()
    stop = threading.Event()
    with client_at(base, "127.0.0.1") as abuser, client_at(base, "127.0.0.2") as shopper:
        for _ in range(40):
            abused[abuser.post("/v1/search", **abuse).status_code] += 1  # type: ignore[arg-type]
        thread = threading.Thread(target=hammer, args=(abuser, stop, abused), kwargs=abuse, daemon=True)
        thread.start()
        try:
            for _ in range(10):
                shopper_codes[shopper.post("/v1/search", files=search_photo()).status_code] += 1
        finally:
            stop.set()
            thread.join(timeout=30)
    return abused, shopper_codes


def test_one_client_cannot_use_up_the_shops_rate_limit(server: str) -> None:
    """The page's key is every shopper's: invalid requests from one client with it limit that client."""
    abused, shopper = while_abused(server, files=JUNK)
    assert abused[429] > 0 and abused[415] > 0  # the abuser is limited...
    assert shopper == Counter({200: 10}), shopper  # ...and only the abuser


def test_forged_forwarded_for_gets_no_fresh_bucket(server: str) -> None:
    """Key guesses with a new X-Forwarded-For each from a client that is no trusted proxy: one bucket."""
    guesses: Counter[int] = Counter()
    with client_at(server, "127.0.0.1") as abuser, client_at(server, "127.0.0.2") as shopper:
        for n in range(60):
            headers = {"X-API-Key": f"guess-{n:04d}-0123456789", "X-Forwarded-For": f"198.51.100.{n}"}
            guesses[abuser.get("/v1/items/item-0001", headers=headers).status_code] += 1
        other = shopper.get("/v1/items/item-0001")
    assert guesses[401] <= 30 and guesses[429] >= 30, guesses  # burst 20, then 5/s
    assert other.status_code == 200


def test_one_client_cannot_take_every_session(server: str) -> None:
    abuser_codes: Counter[int] = Counter()
    with client_at(server, "127.0.0.1") as abuser, client_at(server, "127.0.0.2") as shopper:
        answers = [abuser.post("/v1/sessions", json={}) for _ in range(MAX_SESSIONS + 5)]
        abuser_codes.update(answer.status_code for answer in answers)
        second = shopper.post("/v1/sessions", json={})
        messages = f"/v1/sessions/{second.json().get('session_id')}/messages"
        invisible = shopper.post(messages, json={"sender": "shopper", "text": "\u200b \u2060"})  # item 12
        visible = shopper.post(messages, json={"sender": "shopper", "text": "\u200bhello"})
    assert abuser_codes == Counter({201: 20, 429: MAX_SESSIONS + 5 - 20}), abuser_codes  # the default quota
    refused = answers[-1]
    assert refused.json()["code"] == "too_many_sessions" and int(refused.headers["Retry-After"]) > 0
    assert second.status_code == 201, second.text
    assert invisible.status_code == 422 and invisible.json()["code"] == "invalid_request"
    assert visible.status_code == 201
