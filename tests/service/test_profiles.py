"""Style profiles over HTTP: the quiz, CRUD, expiry on an injected clock, "forget me", a search with a
profile_id showing "matches your style", learning from events (opt-in), the session's insight card, and the
same store in a real Redis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.attributes.taxonomy import load_taxonomy
from search.settings import Settings
from service.app import create_app
from service.errors import ProfileNotFoundError, ProfilesFullError
from service.profile_schemas import ProfileBody
from service.profiles import SqliteProfiles
from service.profiles_redis import RedisProfiles
from service.shared_state import RedisState
from tests.helpers import garment_image, jpeg_bytes
from tests.redis_server import RedisServer

TTL_S = 3600
START = 1_800_000_000.0
ANSWERS: dict[str, Any] = {
    "colours": ["red"],
    "avoid_colours": ["green"],
    "fits": ["loose"],
    "styles": ["casual"],
    "price_min": 10,
    "price_max": 30,
    "brands": ["Testwear"],
    "sizes": ["m"],
}


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def enabled(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"profiles_enabled": True, "profiles_path": tmp_path / "p.sqlite"})


@pytest.fixture
def shop(enabled: Settings, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(enabled)
    app.state.profiles.close()
    app.state.profiles = SqliteProfiles(enabled.profiles_path, TTL_S, load_taxonomy(), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def created(client: TestClient, **answers: Any) -> str:
    answer = client.post("/v1/profiles", json={**ANSWERS, **answers})
    assert answer.status_code == 201, answer.text
    profile_id: str = answer.json()["profile_id"]
    return profile_id


def search(client: TestClient, **form: str) -> Any:
    photo = jpeg_bytes(garment_image(0), quality=95)
    return client.post(
        "/v1/search", files={"image": ("p.jpg", photo, "image/jpeg")}, data={"top_k": "8", **form}
    )


def test_the_quiz_names_its_questions_and_where_answers_are_kept(
    client: TestClient, shop: TestClient
) -> None:
    quiz = client.get("/v1/quiz").json()
    assert quiz["profiles"] == "browser" and shop.get("/v1/quiz").json()["profiles"] == "server"
    questions = {q["id"]: q for q in quiz["questions"]}
    assert list(questions) == ["colours", "avoid_colours", "fits", "styles", "price", "brands", "sizes"]
    assert "navy" in questions["colours"]["choices"] and "casual" in questions["styles"]["choices"]
    assert "loose" in questions["fits"]["choices"] and questions["price"]["kind"] == "price"


def test_profiles_are_off_unless_the_shop_enables_them(client: TestClient) -> None:
    for answer in (
        client.post("/v1/profiles", json=ANSWERS),
        client.get("/v1/profiles/x"),
        search(client, profile_id="x"),
        client.post("/v1/events", json={"type": "click", "item_id": "item-0001", "profile_id": "x"}),
    ):
        assert answer.status_code == 403 and answer.json()["code"] == "profiles_disabled", answer.text
    assert search(client, profile='{"colours": ["red"]}').status_code == 200  # in the browser: inline


def test_create_read_replace_and_forget(shop: TestClient) -> None:
    profile_id = created(shop)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", profile_id)
    body = shop.get(f"/v1/profiles/{profile_id}").json()
    assert body["colours"] == ["red"] and body["learn"] is False and body["learned"] == {}
    assert body["summary"] == (
        "likes red; avoids green; casual; loose fit; brands testwear; price 10-30; size M"
    )
    replaced = shop.put(f"/v1/profiles/{profile_id}", json={"colours": ["navy"], "learn": True})
    assert replaced.status_code == 200 and replaced.json()["summary"] == "likes navy"
    assert shop.delete(f"/v1/profiles/{profile_id}").status_code == 204
    for answer in (
        shop.get(f"/v1/profiles/{profile_id}"),
        shop.delete(f"/v1/profiles/{profile_id}"),
        shop.put(f"/v1/profiles/{profile_id}", json=ANSWERS),
        search(shop, profile_id=profile_id),
    ):
        assert answer.status_code == 404 and answer.json()["code"] == "profile_not_found"


def test_bad_answers_are_refused_and_change_nothing(shop: TestClient, enabled: Settings) -> None:
    bad = shop.post("/v1/profiles", json={"colours": ["ultraviolet"]})
    assert bad.status_code == 422 and "profile.colours: unknown colour 'ultraviolet'" in bad.text
    assert shop.post("/v1/profiles", json={"price_min": 50, "price_max": 10}).status_code == 422
    assert shop.post("/v1/profiles", json={"colour": ["red"]}).status_code == 422  # unknown field
    profile_id = created(shop)
    assert shop.put(f"/v1/profiles/{profile_id}", json={"fits": ["baggy-ish"]}).status_code == 422
    assert shop.get(f"/v1/profiles/{profile_id}").json()["fits"] == ["loose"]


def test_profiles_expire_unless_used_and_use_renews_them(shop: TestClient, clock: FakeClock) -> None:
    kept, dropped = created(shop), created(shop)
    clock.now += TTL_S - 10
    assert search(shop, profile_id=kept).status_code == 200  # a search renews it
    clock.now += 20
    assert shop.get(f"/v1/profiles/{kept}").status_code == 200
    assert shop.get(f"/v1/profiles/{dropped}").status_code == 404


def test_a_search_with_a_profile_id_says_why_a_match_was_boosted(shop: TestClient) -> None:
    profile_id = created(shop, avoid_colours=[], fits=[], styles=[], brands=[], sizes=[], price_min=None,
                         price_max=None)  # fmt: skip
    plain = search(shop).json()["garments"][0]["matches"]
    styled = search(shop, profile_id=profile_id).json()["garments"][0]["matches"]
    assert all(m["profile_boost"] == 0 and m["profile_match"] is None for m in plain)
    red = [m for m in styled if m["attributes"]["colour"]["value"] == "red"]
    assert red and all(m["profile_match"]["explanation"] == "matches your style: red" for m in red)
    assert all(m["profile_boost"] > 0 for m in red)
    others = [m for m in styled if m["attributes"]["colour"]["value"] != "red"]
    assert all(m["profile_boost"] == 0 and m["profile_match"] is None for m in others)
    both = search(shop, profile_id=profile_id, profile='{"colours": ["red"]}')
    assert both.status_code == 422 and "not both" in both.text


def test_events_teach_a_profile_that_opted_in(shop: TestClient) -> None:
    learning, fixed = created(shop, learn=True), created(shop)
    for profile_id in (learning, fixed):
        for item_id in ("item-0001", "item-0001", "unknown-item"):
            event = {"type": "add_to_cart", "item_id": item_id, "category": "top", "profile_id": profile_id}
            assert shop.post("/v1/events", json=event).status_code == 202
    learned = shop.get(f"/v1/profiles/{learning}").json()
    assert learned["learned"]["brand"]["testwear"] > 1 and learned["learned_price"] == 11.0
    assert shop.get(f"/v1/profiles/{fixed}").json()["learned"] == {}
    unknown = shop.post("/v1/events", json={"type": "click", "item_id": "item-0001", "profile_id": "nope"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "profile_not_found"
    off = shop.put(f"/v1/profiles/{learning}", json={**ANSWERS, "learn": False}).json()
    assert off["learned"] == {} and off["learned_price"] is None  # opting out forgets what was learned


def test_the_session_gets_the_profile_line_never_its_id(shop: TestClient) -> None:
    profile_id = created(shop)
    session_id = shop.post("/v1/sessions", json={}).json()["session_id"]
    shared = shop.put(
        f"/v1/sessions/{session_id}/profile", json={"profile_id": profile_id, "returning": True}
    )
    assert shared.status_code == 200, shared.text
    assert shared.json()["profile"].startswith("likes red") and shared.json()["returning"] is True
    snapshot = shop.get(f"/v1/sessions/{session_id}")
    assert snapshot.json()["insight"]["profile"].startswith("likes red") and profile_id not in snapshot.text
    # forget me: the profile is deleted and the session told
    assert shop.delete(f"/v1/profiles/{profile_id}").status_code == 204
    forgotten = shop.put(f"/v1/sessions/{session_id}/profile", json={"returning": True}).json()
    assert (
        forgotten["profile"] is None and shop.get(f"/v1/sessions/{session_id}").json()["insight"] == forgotten
    )
    inline = shop.put(f"/v1/sessions/{session_id}/profile", json={"profile": {"styles": ["formal"]}})
    assert inline.json()["profile"] == "formal"
    gone = shop.put(f"/v1/sessions/{session_id}/profile", json={"profile_id": profile_id})
    assert gone.status_code == 404 and gone.json()["code"] == "profile_not_found"
    assert shop.put("/v1/sessions/nope/profile", json={}).json()["code"] == "session_not_found"


def test_profiles_survive_a_restart_and_a_broken_file_is_a_clear_error(enabled: Settings) -> None:
    with TestClient(create_app(enabled)) as first:
        profile_id = created(first)
    with TestClient(create_app(enabled)) as second:
        assert second.get(f"/v1/profiles/{profile_id}").json()["colours"] == ["red"]
    enabled.profiles_path.write_bytes(b"not a database" * 100)
    with pytest.raises(RuntimeError, match="is not a usable SQLite database"):
        create_app(enabled)


def test_redis_profiles_are_shared_expire_and_learn_atomically(redis_server: RedisServer) -> None:
    from indexer.metadata import ItemRecord
    from models.attributes.guess import AttributeGuess

    state = RedisState(redis_server.url, "test", timeout_s=0.5)
    a, b = (RedisProfiles(state, TTL_S, load_taxonomy()) for _ in range(2))
    profile_id = a.create(ProfileBody(**ANSWERS, learn=True)).profile_id
    assert b.get(profile_id).summary.startswith("likes red")
    navy = {"colour": AttributeGuess("navy", 1.0, "feed")}
    record = ItemRecord(0, "i", "t", "top", "Acme", 20.0, "EUR", True, "", navy)
    for store in (a, b, a):
        assert store.learn(profile_id, record, "click")
    assert b.get(profile_id).learned["colour"]["navy"] == pytest.approx(0.5 * (1 + 0.85 + 0.85**2), abs=1e-3)
    assert TTL_S * 1000 - 5000 < state.sync.pttl(state.key("profile", profile_id)) <= TTL_S * 1000
    b.delete(profile_id)
    with pytest.raises(ProfileNotFoundError):
        a.get(profile_id)


def test_the_store_is_bounded_and_expired_profiles_make_room(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    clock = FakeClock()
    taxonomy = load_taxonomy()
    state = RedisState(redis_server.url, "bounded", timeout_s=0.5)
    for store in (
        SqliteProfiles(tmp_path / "p.sqlite", TTL_S, taxonomy, clock=clock, max_profiles=2),
        RedisProfiles(state, TTL_S, taxonomy, max_profiles=2),
    ):
        kept = [store.create(ProfileBody(colours=["red"])).profile_id for _ in range(2)]
        with pytest.raises(ProfilesFullError) as refused:
            store.create(ProfileBody())
        assert refused.value.retry_after_s == 60
        store.delete(kept[0])
        store.create(ProfileBody())  # a forgotten profile frees its place
    clock.now += TTL_S + 1
    sqlite = SqliteProfiles(tmp_path / "p.sqlite", TTL_S, taxonomy, clock=clock, max_profiles=2)
    sqlite.create(ProfileBody())  # both expired: swept, room again
