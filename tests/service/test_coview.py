"""Co-viewing sessions: creation, snapshots, expiry on an injected clock, isolation, bounds, pushes, messages,
searches attached to a session, and the event stream (TestClient streams the response as it is sent)."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import re
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr

from search.responses import SearchResponse
from search.settings import Settings
from service.app import create_app
from service.coview import MAX_STREAMS, SessionStore, session_photo
from service.coview_session import MAX_ACTIVITY, MAX_MESSAGES, MAX_PENDING_FRAMES, MAX_PUSHES
from service.errors import SessionsFullError, TooManySessionsError, TooManyStreamsError
from service.shop_schemas import PushedItem, SessionSnapshot
from tests.helpers import garment_image, jpeg_bytes

TTL_S = 60
MAX_AGE_S = 600
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> SessionStore:
    return SessionStore(TTL_S, MAX_AGE_S, max_sessions=3, ping_s=0.05, clock=clock)


@pytest.fixture
def coview(settings: Settings, store: SessionStore) -> Iterator[TestClient]:
    app = create_app(settings)
    app.state.sessions = store
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def new_session(client: TestClient) -> str:
    created = client.post("/v1/sessions", json={})
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session_id"]
    return session_id


def snapshot(client: TestClient, session_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/sessions/{session_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_new_session_has_an_unguessable_id_and_an_empty_snapshot(coview: TestClient) -> None:
    created = coview.post("/v1/sessions", json={})
    no_body = coview.post("/v1/sessions")
    assert created.status_code == 201 and no_body.status_code == 201
    body = created.json()
    session_id = body["session_id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", session_id)  # 32 random bytes, url-safe
    assert session_id != no_body.json()["session_id"]
    assert body == {
        "session_id": session_id,
        "assist_url": f"/assist/{session_id}",
        "expires_at": "2027-01-15T08:01:00.000Z",  # START + TTL_S
        "ttl_s": TTL_S,
    }
    assert snapshot(coview, session_id) == {
        "session_id": session_id,
        "expires_at": body["expires_at"],
        "search": None,
        "photo_url": None,
        "selected": None,
        "messages": [],
        "activity": [],
        "pushed": [],
        "insight": {
            "intent": "browsing",
            "reason": "no activity yet",
            "cart": [],
            "returning": False,
            "profile": None,
            "opener": "Hi! I'm here if you'd like a hand finding something.",
        },
    }
    refused = coview.post("/v1/sessions", json={"ttl_s": 5})
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_request"


def test_sessions_are_isolated_and_guesses_get_404(coview: TestClient) -> None:
    first, second = new_session(coview), new_session(coview)
    coview.post(f"/v1/sessions/{first}/messages", json={"sender": "shopper", "text": "only in the first"})
    other = snapshot(coview, second)
    assert other["messages"] == [] and first not in str(other)
    guesses = [first[:-1] + ("A" if first[-1] != "A" else "B"), first[:20], first + "x", "0" * 43]
    for guess in guesses:
        for path in ("", "/photo", "/stream"):
            answer = coview.get(f"/v1/sessions/{guess}{path}")
            assert answer.status_code == 404 and answer.json()["code"] == "session_not_found", (guess, path)
            assert first not in answer.text and second not in answer.text


def test_idle_sessions_expire_and_activity_renews_them(coview: TestClient, clock: FakeClock) -> None:
    session_id = new_session(coview)
    clock.now += TTL_S - 1
    assert snapshot(coview, session_id)["expires_at"] == "2027-01-15T08:01:00.000Z"  # reading does not renew
    posted = coview.post(f"/v1/sessions/{session_id}/messages", json={"sender": "assistant", "text": "hi"})
    assert posted.status_code == 201
    clock.now += TTL_S - 1
    assert snapshot(coview, session_id)["expires_at"] == "2027-01-15T08:01:59.000Z"  # renewed by the message
    clock.now += 1
    expired = coview.get(f"/v1/sessions/{session_id}")
    never = coview.get("/v1/sessions/never-existed")
    assert expired.status_code == never.status_code == 404
    assert expired.json() == never.json()  # expired and unknown ids answer alike
    late = coview.post(f"/v1/sessions/{session_id}/messages", json={"sender": "assistant", "text": "hi"})
    assert late.status_code == 404 and late.json()["code"] == "session_not_found"


def test_an_active_session_still_ends_at_its_maximum_age(coview: TestClient, clock: FakeClock) -> None:
    session_id = new_session(coview)
    event = {"type": "select_garment", "garment": 0, "session_id": session_id}
    while clock.now + TTL_S / 2 < START + MAX_AGE_S:
        clock.now += TTL_S / 2
        assert coview.post("/v1/events", json=event).status_code == 202
    assert snapshot(coview, session_id)["expires_at"] == "2027-01-15T08:10:00.000Z"  # START + MAX_AGE_S
    clock.now = START + MAX_AGE_S
    assert coview.post("/v1/events", json=event).status_code == 404


def test_a_full_store_answers_503_until_a_session_expires(
    coview: TestClient, store: SessionStore, clock: FakeClock
) -> None:
    ids = [new_session(coview) for _ in range(3)]
    clock.now += 20
    full = coview.post("/v1/sessions")
    assert full.status_code == 503 and full.json()["code"] == "sessions_full"
    assert full.headers["Retry-After"] == str(TTL_S - 20)  # until the first session expires
    coview.post(f"/v1/sessions/{ids[0]}/messages", json={"sender": "shopper", "text": "still here"})
    clock.now += TTL_S - 19  # the other two expire; the first was renewed
    assert coview.post("/v1/sessions").status_code == 201
    assert len(store) == 2  # swept: the expired ones are gone, not just hidden
    assert snapshot(coview, ids[0])["messages"][0]["text"] == "still here"


def test_one_client_address_holds_at_most_its_quota_of_sessions(
    store: SessionStore, clock: FakeClock
) -> None:
    store.max_sessions = 10
    first = store.create("203.0.113.1", max_per_client=2).session_id
    store.create("203.0.113.1", max_per_client=2)
    clock.now += 20
    with pytest.raises(TooManySessionsError) as refused:
        store.create("203.0.113.1", max_per_client=2)
    assert refused.value.retry_after_s == TTL_S - 20  # until its first session expires
    assert store.create("203.0.113.2", max_per_client=2)  # another address is not affected
    store.add_message(first, "shopper", "still here")  # renewed: it still counts
    clock.now += TTL_S - 19  # the second expires
    second = store.create("203.0.113.1", max_per_client=2).session_id
    with pytest.raises(TooManySessionsError):
        store.create("203.0.113.1", max_per_client=2)
    assert len(store) == 3
    # `first` ends at its maximum age while a live session is ahead of it (less recently active): not swept
    # from the front, yet it no longer counts.
    ahead = store.create("203.0.113.3").session_id
    while clock.now + TTL_S / 2 < START + MAX_AGE_S:
        for session_id in (ahead, first, second):
            store.add_message(session_id, "shopper", "still here")
        clock.now += TTL_S / 2
    clock.now = START + MAX_AGE_S
    assert store.create("203.0.113.1", max_per_client=2)
    with pytest.raises(TooManySessionsError):
        store.create("203.0.113.1", max_per_client=2)


def test_the_session_quota_is_a_429_with_retry_after(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_sessions_per_client": 2}))
    with TestClient(app, client=("203.0.113.1", 5000)) as client:
        codes = [client.post("/v1/sessions").status_code for _ in range(3)]
        refused = client.post("/v1/sessions")
        elsewhere = TestClient(app, client=("203.0.113.2", 5000)).post("/v1/sessions")
    assert codes == [201, 201, 429]
    assert refused.json()["code"] == "too_many_sessions"
    assert settings.session_ttl_s - 10 < int(refused.headers["Retry-After"]) <= settings.session_ttl_s
    assert elsewhere.status_code == 201


def test_a_full_store_evicts_its_least_recently_active_idle_session_without_a_search(
    clock: FakeClock,
) -> None:
    store = SessionStore(ttl_s=600, max_age_s=6000, max_sessions=3, clock=clock, evict_idle_s=60)
    oldest, searched, renewed = (store.create().session_id for _ in range(3))
    store.attach_search(searched, b"jpeg", SearchResponse(garments=[], image_size=[1, 1], timings_ms={}))
    clock.now += 10
    store.add_message(renewed, "shopper", "hello")
    clock.now += 40
    with pytest.raises(SessionsFullError) as full:  # nobody idle for 60 s yet
        store.create()
    assert full.value.retry_after_s == 10  # when `oldest` may be evicted
    clock.now += 10
    store.create()  # evicts `oldest`: idle 60 s and never searched
    with pytest.raises(SessionsFullError):
        store.create()  # `renewed` is idle for only 50 s; `searched` is kept
    clock.now += 10
    store.create()  # now `renewed` goes
    for gone in (oldest, renewed):
        with pytest.raises(Exception, match="no such co-viewing session"):
            store.require(gone)
    store.require(searched)
    assert len(store) == 3
    every_one_searched = SessionStore(ttl_s=600, max_age_s=6000, max_sessions=1, clock=clock)
    only = every_one_searched.create().session_id
    every_one_searched.attach_search(
        only, b"jpeg", SearchResponse(garments=[], image_size=[1, 1], timings_ms={})
    )
    clock.now += 100
    with pytest.raises(SessionsFullError) as full:
        every_one_searched.create()
    assert full.value.retry_after_s == 500  # until it expires: a searched session is never evicted


def test_an_evicted_session_tells_its_streams(clock: FakeClock) -> None:
    store = SessionStore(ttl_s=600, max_age_s=6000, max_sessions=1, clock=clock, evict_idle_s=60)
    session_id = store.create().session_id

    async def main() -> list[str]:
        subscriber, first = store.subscribe(session_id, asyncio.get_running_loop())
        clock.now += 60
        store.create()
        return await asyncio.wait_for(_drain(store.frames(subscriber, first)), 5)

    frames = asyncio.run(main())
    assert [frame.split("\n")[0] for frame in frames] == ["event: snapshot", "event: expired"]


async def _drain(frames: Any) -> list[str]:
    return [frame async for frame in frames]


def realistic_search(garments: int, top_k: int) -> dict[str, Any]:
    """A search response as the shipped models give it: every garment and match with ten attributes."""
    groups = ["colour", "pattern", "sleeve_length", "neckline", "fit", "material", "style", "gender"]
    groups += ["season", "length"]

    def attributes(seed: int) -> dict[str, Any]:
        return {
            g: {"value": f"{g}-{seed % 7}", "confidence": 0.8123, "source": "model", "alternatives": []}
            for g in groups
        }

    def match(n: int) -> dict[str, Any]:
        agreement = {"group": "colour", "value": "blue", "query": "blue", "source": "model"}
        return {
            "item_id": f"item-{n:06d}",
            "title": f"Slim fit organic cotton shirt with long sleeves {n}",
            "category": "top",
            "brand": "Brandname",
            "price": 49.95,
            "currency": "EUR",
            "in_stock": True,
            "url": f"https://shop.example.com/products/slim-fit-organic-cotton-shirt-{n}?colour=blue",
            "attributes": attributes(n),
            "score": 0.7312,
            "visual_score": 0.8123,
            "attribute_score": 0.6,
            "profile_boost": 0.0,
            "matched": [agreement] * 4,
            "mismatched": [agreement] * 2,
        }

    garment = {
        "box": [10, 20, 300, 400],
        "category": "top",
        "score": 0.9,
        "attributes": attributes(0),
        "colours": [{"name": "blue", "fraction": 0.6}, {"name": "white", "fraction": 0.4}],
        "unknown_attributes": ["material"],
        "refinement": None,
    }
    return {
        "garments": [
            {**garment, "matches": [match(g * 1000 + k) for k in range(top_k)]} for g in range(garments)
        ],
        "image_size": [3000, 4000],
        "timings_ms": {"decode": 12.0, "detect": 80.0, "embed": 30.0, "search": 2.0, "total": 130.0},
    }


def test_a_session_with_a_search_holds_about_its_json_not_objects(store: SessionStore) -> None:
    """The memory a search costs its session: its JSON and photo, not 5-6 times that in pydantic objects."""
    session_id = store.create().session_id
    data = realistic_search(garments=4, top_k=10)
    picture = garment_image(2, size=1200)
    gc.collect()
    tracemalloc.start()
    try:
        response = SearchResponse.model_validate(data)  # as the search route builds it
        store.attach_search(session_id, session_photo(picture), response)
        del response
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    photo = store.photo(session_id)
    response_json = json.dumps(data, separators=(",", ":"))
    assert held < 1.3 * (len(response_json) + len(photo)), (held, len(response_json), len(photo))
    kept = SessionSnapshot.model_validate_json(store.snapshot(session_id))
    assert (
        kept.search is not None
        and kept.search.model_dump() == SearchResponse.model_validate(data).model_dump()
    )


def test_the_snapshot_json_is_a_session_snapshot(store: SessionStore) -> None:
    session_id = store.create().session_id
    item = PushedItem(
        item_id="i", title="t", brand="b", price=None, currency="EUR", in_stock=True, category="top", url=""
    )
    store.add_message(session_id, "shopper", 'quotes " and \\ and ünïcode')
    store.add_push(session_id, item, 0, None)
    store.add_activity(session_id, "select_garment", None, None, 1)
    store.attach_search(session_id, b"jpeg", SearchResponse.model_validate(realistic_search(1, 2)))
    text = store.snapshot(session_id)
    assert list(json.loads(text)) == list(SessionSnapshot.model_fields)  # the model's order
    snapshot = SessionSnapshot.model_validate_json(text)
    assert snapshot.messages[0].text == 'quotes " and \\ and ünïcode' and snapshot.pushed[0].item == item
    assert snapshot.selected is None and snapshot.search is not None  # a new search clears the selection
    assert snapshot.photo_url == f"/v1/sessions/{session_id}/photo?v=1"


def test_max_sessions_comes_from_the_settings(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_sessions": 2}))) as client:
        codes = [client.post("/v1/sessions").status_code for _ in range(3)]
        assert client.app.state.sessions.ttl_s == settings.session_ttl_s
    assert codes == [201, 201, 503]


def test_each_session_keeps_only_its_most_recent_entries(coview: TestClient, store: SessionStore) -> None:
    session_id = new_session(coview)
    item = PushedItem(
        item_id="item-0001",
        title="t",
        brand="b",
        price=1.0,
        currency="EUR",
        in_stock=True,
        category="top",
        url="",
    )
    for n in range(MAX_MESSAGES + 5):
        store.add_message(session_id, "shopper", f"message {n}")
    for n in range(MAX_PUSHES + 5):
        store.add_push(session_id, item, None, f"push {n}")
    for n in range(MAX_ACTIVITY + 5):
        store.add_activity(session_id, "click", f"item-{n}", "top", None)
    body = snapshot(coview, session_id)
    assert [m["text"] for m in body["messages"]] == [f"message {n}" for n in range(5, MAX_MESSAGES + 5)]
    assert [p["note"] for p in body["pushed"]] == [f"push {n}" for n in range(5, MAX_PUSHES + 5)]
    assert [a["item_id"] for a in body["activity"]] == [f"item-{n}" for n in range(5, MAX_ACTIVITY + 5)]


def test_messages_are_validated(coview: TestClient) -> None:
    session_id = new_session(coview)
    url = f"/v1/sessions/{session_id}/messages"
    bad = [
        {"sender": "shopper", "text": ""},
        {"sender": "shopper", "text": "   "},
        {"sender": "shopper", "text": "\u200b"},  # a zero-width space
        {"sender": "shopper", "text": " \u200b\u200c\u200d\u2060\ufeff\u00ad\u202e \u3000\u3164\x00 "},
        {"sender": "shopper", "text": "x" * 501},
        {"sender": "manager", "text": "hello"},
        {"sender": "shopper"},
        {"sender": "shopper", "text": "hello", "html": "<b>"},
    ]
    for body in bad:
        answer = coview.post(url, json=body)
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_request", body
    family = coview.post(
        url, json={"sender": "shopper", "text": "\U0001f468\u200d\U0001f469\u200d\U0001f467"}
    )
    assert family.status_code == 201  # joiners inside an emoji: it shows
    coview.post(url, json={"sender": "assistant", "text": "\u200bhi"})  # something shows: kept as sent
    longest = coview.post(url, json={"sender": "assistant", "text": " " + "y" * 500 + " "})
    assert longest.status_code == 201
    assert longest.json()["text"] == "y" * 500 and longest.json()["id"] == 3
    texts = [m["text"] for m in snapshot(coview, session_id)["messages"]]
    assert texts == ["\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u200bhi", "y" * 500]


def test_the_assistant_pushes_catalogue_items_only(coview: TestClient) -> None:
    session_id = new_session(coview)
    url = f"/v1/sessions/{session_id}/push"
    pushed = coview.post(url, json={"item_id": "item-0003", "garment": 0, "note": "look at this one"})
    assert pushed.status_code == 201, pushed.text
    assert pushed.json()["item"] == {
        "item_id": "item-0003",
        "title": "Test garment 3",
        "brand": "Testwear",
        "price": 13.0,
        "currency": "EUR",
        "in_stock": True,
        "category": "bag",
        "url": "https://shop.example/p/3",
    }
    unknown = coview.post(url, json={"item_id": "no-such-item"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "item_not_found"
    no_session = coview.post("/v1/sessions/nope/push", json={"item_id": "item-0003"})
    assert no_session.status_code == 404 and no_session.json()["code"] == "session_not_found"
    long_note = coview.post(url, json={"item_id": "item-0003", "note": "n" * 201})
    assert long_note.status_code == 422
    assert [p["note"] for p in snapshot(coview, session_id)["pushed"]] == ["look at this one"]


def test_events_become_session_activity_and_select_a_garment(coview: TestClient) -> None:
    session_id = new_session(coview)
    events = [
        {"type": "select_garment", "garment": 2, "session_id": session_id},
        {"type": "click", "item_id": "item-0001", "category": "top", "garment": 2, "session_id": session_id},
        {"type": "add_to_cart", "item_id": "item-0001", "category": "top", "session_id": session_id},
    ]
    assert [coview.post("/v1/events", json=e).status_code for e in events] == [202, 202, 202]
    body = snapshot(coview, session_id)
    assert body["selected"] == 2
    assert [(a["type"], a["item_id"], a["garment"]) for a in body["activity"]] == [
        ("select_garment", None, 2),
        ("click", "item-0001", 2),
        ("add_to_cart", "item-0001", None),
    ]
    no_item = coview.post("/v1/events", json={"type": "click", "session_id": session_id})
    assert no_item.status_code == 422 and "item_id" in no_item.json()["message"]
    unknown = coview.post("/v1/events", json={**events[1], "session_id": "nope"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "session_not_found"


def exif_rotated_jpeg() -> bytes:
    """A 900x500 JPEG whose EXIF says "rotate 90": upright it is 500x900."""
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    garment_image(5, size=500).resize((900, 500)).save(out, format="JPEG", quality=90, exif=exif)
    return out.getvalue()


def test_a_search_with_a_session_keeps_the_photo_and_the_results(
    settings: Settings, coview: TestClient
) -> None:
    session_id = new_session(coview)
    coview.post("/v1/events", json={"type": "select_garment", "garment": 0, "session_id": session_id})
    files = {"image": ("street.jpg", exif_rotated_jpeg(), "image/jpeg")}
    searched = coview.post("/v1/search", files=files, data={"top_k": "3", "session_id": session_id})
    assert searched.status_code == 200, searched.text
    body = snapshot(coview, session_id)
    assert body["search"]["garments"] == searched.json()["garments"]
    assert body["search"]["image_size"] == [500, 900]
    assert body["photo_url"] == f"/v1/sessions/{session_id}/photo?v=1"
    assert body["selected"] is None  # a new photo has new garments
    photo = coview.get(body["photo_url"])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert "no-store" in photo.headers["cache-control"]
    with Image.open(io.BytesIO(photo.content)) as shown:
        assert shown.format == "JPEG" and shown.height == 640 and shown.width in (355, 356)  # upright
    again = coview.post("/v1/search", files=files, data={"session_id": session_id})
    assert again.status_code == 200
    assert snapshot(coview, session_id)["photo_url"].endswith("?v=2")


def test_a_session_has_no_photo_before_its_first_search(coview: TestClient) -> None:
    session_id = new_session(coview)
    answer = coview.get(f"/v1/sessions/{session_id}/photo")
    assert answer.status_code == 404 and answer.json()["code"] == "photo_not_found"


def test_a_search_with_an_unknown_session_is_404_and_does_not_run(
    coview: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[object] = []
    searcher = coview.app.state.searcher
    monkeypatch.setattr(searcher, "search", lambda *args: ran.append(args))
    files = {"image": ("a.jpg", jpeg_bytes(garment_image(1)), "image/jpeg")}
    answer = coview.post("/v1/search", files=files, data={"session_id": "not-a-session"})
    assert answer.status_code == 404 and answer.json()["code"] == "session_not_found"
    assert ran == []


def read_events(lines: Iterator[str], count: int) -> list[tuple[str, str]]:
    """A stream's next `count` events (or all until it ends) as (name, data), with its comments (pings)
    among them as (":", comment)."""
    found: list[tuple[str, str]] = []
    name = data = ""
    for line in lines:
        if line.startswith(":"):
            found.append((":", line[1:].strip()))
        elif line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and name:
            found.append((name, data))
            name = data = ""
            count -= 1
            if count == 0:
                break
    return found


def when_streaming(store: SessionStore, action: Any) -> threading.Thread:
    """Run `action` in a thread once the store has an open stream."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while store.open_streams() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_stream_sends_the_snapshot_then_live_events_then_expired(
    coview: TestClient, store: SessionStore, clock: FakeClock
) -> None:
    session_id = new_session(coview)
    coview.post(f"/v1/sessions/{session_id}/messages", json={"sender": "shopper", "text": "before"})

    def act() -> None:
        coview.post(f"/v1/sessions/{session_id}/messages", json={"sender": "shopper", "text": "during"})
        coview.post(f"/v1/sessions/{session_id}/push", json={"item_id": "item-0002"})
        coview.post("/v1/events", json={"type": "click", "item_id": "item-0002", "session_id": session_id})
        time.sleep(0.2)  # a few pings
        clock.now += TTL_S

    thread = when_streaming(store, act)
    with coview.stream("GET", f"/v1/sessions/{session_id}/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache" and stream.headers["x-accel-buffering"] == "no"
        events = read_events(stream.iter_lines(), 1000)  # until the stream ends
    thread.join(5)
    names = [name for name, _ in events if name != ":"]
    assert names == ["snapshot", "message", "push", "activity", "insight", "expired"]
    assert '"text":"before"' in events[0][1] and '"text":"during"' in events[1][1]
    assert ("message", '"text":"before"') not in events[1:]
    assert any(name == ":" for name, _ in events)  # pings while idle
    assert events[-1] == ("expired", "{}")
    assert store.open_streams() == 0


def test_a_search_reaches_the_stream(coview: TestClient, store: SessionStore) -> None:
    session_id = new_session(coview)
    files = {"image": ("a.jpg", jpeg_bytes(garment_image(2)), "image/jpeg")}
    searched: list[Any] = []
    thread = when_streaming(
        store,
        lambda: searched.append(coview.post("/v1/search", files=files, data={"session_id": session_id})),
    )
    with coview.stream("GET", f"/v1/sessions/{session_id}/stream") as stream:
        events = [event for event in read_events(stream.iter_lines(), 2) if event[0] != ":"]
    thread.join(10)
    assert events[0][0] == "snapshot" and events[1][0] == "search"
    assert searched[0].json()["garments"][0]["matches"][0]["item_id"] in events[1][1]
    assert f'"photo_url":"/v1/sessions/{session_id}/photo?v=1"' in events[1][1]


def test_a_session_has_at_most_max_streams(coview: TestClient, store: SessionStore) -> None:
    session_id = new_session(coview)
    loop = asyncio.new_event_loop()
    try:
        subscribers = [store.subscribe(session_id, loop)[0] for _ in range(MAX_STREAMS)]
        with pytest.raises(TooManyStreamsError):
            store.subscribe(session_id, loop)
        refused = coview.get(f"/v1/sessions/{session_id}/stream")
        assert refused.status_code == 429 and refused.json()["code"] == "too_many_streams"
        assert int(refused.headers["Retry-After"]) >= 1
        store.unsubscribe(subscribers[0])
        assert store.subscribe(session_id, loop)[0] is not None
    finally:
        loop.close()


async def collect(store: SessionStore, session_id: str) -> list[str]:
    subscriber, first = store.subscribe(session_id, asyncio.get_running_loop())
    return [frame async for frame in store.frames(subscriber, first)]


def test_changes_from_many_threads_reach_a_stream_in_order(store: SessionStore) -> None:
    session_id = store.create().session_id
    store.ping_s = 60.0

    async def main() -> list[str]:
        reader = asyncio.create_task(collect(store, session_id))
        while store.open_streams() == 0:
            await asyncio.sleep(0.001)

        def post(sender: str) -> None:
            for n in range(40):
                store.add_message(session_id, "shopper", f"{sender} {n}")  # type: ignore[arg-type]

        await asyncio.gather(*(asyncio.to_thread(post, f"t{k}") for k in range(4)))
        store.close_streams()
        return await asyncio.wait_for(reader, 5)

    frames = asyncio.run(main())
    ids = [int(re.search(r'"id":(\d+)', frame).group(1)) for frame in frames[1:]]  # type: ignore[union-attr]
    assert ids == list(range(1, 161))  # every message once, in the order the store numbered them
    assert store.open_streams() == 0


def test_a_stream_that_falls_behind_is_ended(store: SessionStore) -> None:
    session_id = store.create().session_id

    async def main() -> list[str]:
        subscriber, first = store.subscribe(session_id, asyncio.get_running_loop())
        for n in range(MAX_PENDING_FRAMES + 10):  # nobody reads meanwhile
            store.add_message(session_id, "shopper", f"m{n}")
        await asyncio.sleep(0.05)  # let the loop deliver them

        async def drain() -> list[str]:
            return [frame async for frame in store.frames(subscriber, first)]

        return await asyncio.wait_for(drain(), 5)  # a stream that is not ended would wait for pings

    frames = asyncio.run(main())
    assert len(frames) == 1 + MAX_PENDING_FRAMES  # the snapshot, then what fitted; then the end
    assert store.open_streams() == 0
    last = SessionSnapshot.model_validate_json(store.snapshot(session_id)).messages[-1]
    assert last.text == f"m{MAX_PENDING_FRAMES + 9}"  # the session lives on


def test_pages_are_served_without_keys(settings: Settings) -> None:
    keyed = settings.model_copy(update={"search_keys": [SecretStr("k" * 20)]})
    with TestClient(create_app(keyed)) as client:
        shop = client.get("/")
        assist = client.get("/assist/any-id-at-all")
        script = client.get("/static/common.js")
        outside = client.get("/static/%2e%2e/settings.py")
        api = client.post("/v1/sessions")
    assert shop.status_code == 200 and "text/html" in shop.headers["content-type"]
    assert assist.status_code == 200 and assist.text != shop.text
    assert assist.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'self'" in assist.headers["content-security-policy"]
    assert script.status_code == 200
    assert outside.status_code == 404 and "Settings" not in outside.text
    assert api.status_code == 401  # the API behind the pages still needs the key


def test_openapi_declares_the_session_routes(coview: TestClient) -> None:
    schema = coview.get("/openapi.json").json()
    paths = schema["paths"]
    assert "/" not in paths and "/assist/{session_id}" not in paths
    stream = paths["/v1/sessions/{session_id}/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert stream["security"] == [{"StorefrontKey": []}]
    assert paths["/v1/sessions"]["post"]["responses"]["503"]["content"]["application/problem+json"]
    assert paths["/v1/stats"]["get"]["security"] == [{"AdminKey": []}]
    content = paths["/v1/search"]["post"]["requestBody"]["content"]
    assert "session_id" in content["multipart/form-data"]["schema"]["properties"]
    assert "session_id" in schema["components"]["schemas"]["SearchBody"]["properties"]
