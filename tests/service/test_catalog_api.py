"""Catalogue changes without downtime: admin HTTP add / upsert / delete, and CLI changes picked up by a
running service without a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from indexer.build import BuildOptions, build_index
from indexer.manifest import VECTORS_NAME
from indexer.publish import build_lock
from indexer.update import update_index
from models.attributes.extractor import create_extractor
from models.embedder import Embedder
from search.settings import Settings
from service.app import create_app
from tests.helpers import garment_image, jpeg_bytes, write_catalog

ADMIN = {"X-Admin-Key": "admin-key-0123456789abcdef"}


@pytest.fixture
def shop(tmp_path: Path, tiny_embedder: Embedder) -> tuple[Path, Path]:
    """(index link, image root): a published 8-item index whose images live under the image root."""
    root = tmp_path / "images-root"
    out = tmp_path / "served" / "index"
    build_index(
        write_catalog(root, 8),
        out,
        tiny_embedder,
        BuildOptions(progress=False),
        create_extractor(tiny_embedder),
    )
    for seed in (301, 302):
        garment_image(seed).save(root / "images" / f"new-{seed}.jpg", quality=95)
    return out, root


@pytest.fixture
def admin(settings: Settings, shop: tuple[Path, Path]) -> Settings:
    out, root = shop
    return settings.model_copy(
        update={"index_dir": out, "image_root": root, "admin_key": SecretStr(ADMIN["X-Admin-Key"])}
    )


def search_top1(client: TestClient, seed: int) -> str:
    image = {"image": ("q.jpg", jpeg_bytes(garment_image(seed), quality=95), "image/jpeg")}
    response = client.post("/v1/search", files=image, data={"top_k": "1"})
    assert response.status_code == 200, response.text
    return response.json()["garments"][0]["matches"][0]["item_id"]


def row(item_id: str, image: str, **extra: object) -> dict[str, object]:
    return {"id": item_id, "image": image, "title": item_id, "category": "top", **extra}


def test_added_items_are_searchable_when_the_call_returns(admin: Settings) -> None:
    with TestClient(create_app(admin)) as client:
        items = [row("new-301", "images/new-301.jpg", price=12.5), row("new-302", "images/new-302.jpg")]
        added = client.post("/v1/admin/items", json={"items": items}, headers=ADMIN)
        assert added.status_code == 200, added.text
        body = added.json()
        assert (body["changed"], body["added"], body["count"], body["skipped"]) == (True, 2, 10, [])
        assert search_top1(client, 302) == "new-302"
        assert client.get("/v1/items/new-301").json()["price"] == 12.5
        assert client.get("/readyz").json()["items"] == 10

        (admin.image_root / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
        broken = {"items": [row("broken", "images/broken.jpg")]}
        refused = client.post("/v1/admin/items", json=broken, headers=ADMIN).json()
        assert refused["skipped"][0].startswith("broken: unreadable image <...>/broken.jpg")
        assert str(admin.image_root) not in str(refused)
        again = client.post("/v1/admin/items", json={"items": items[:1]}, headers=ADMIN).json()
        assert not again["changed"] and "use upsert" in again["skipped"][0]
        upsert = {"items": [row("new-301", "images/new-301.jpg", price=9.0)], "mode": "upsert"}
        replaced = client.post("/v1/admin/items", json=upsert, headers=ADMIN).json()
        assert replaced["replaced"] == 1 and client.get("/v1/items/new-301").json()["price"] == 9.0


def test_deleted_items_are_gone_when_the_call_returns(admin: Settings) -> None:
    with TestClient(create_app(admin)) as client:
        assert search_top1(client, 3) == "item-0003"
        deleted = client.post("/v1/admin/items/delete", json={"ids": ["item-0003", "nope"]}, headers=ADMIN)
        assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
        assert deleted.json()["missing_ids"] == ["nope"]
        assert client.get("/v1/items/item-0003").status_code == 404
        assert search_top1(client, 3) != "item-0003"


@pytest.mark.parametrize("image", ["/etc/passwd", "../outside.jpg", "images/missing.jpg", "images"])
def test_images_outside_the_root_are_refused_and_nothing_changes(admin: Settings, image: str) -> None:
    with TestClient(create_app(admin)) as client:
        build = client.get("/readyz").json()["index_created_at"], admin.index_dir.resolve()
        response = client.post("/v1/admin/items", json={"items": [row("x", image)]}, headers=ADMIN)
        assert response.status_code == 422 and response.json()["code"] == "invalid_request"
        assert "nothing changed" in response.json()["message"] and str(admin.image_root) not in response.text
        assert admin.index_dir.resolve() == build[1]


def test_bad_bodies_are_422_and_changes_need_an_image_root(admin: Settings, settings: Settings) -> None:
    with TestClient(create_app(admin)) as client:
        assert client.post("/v1/admin/items", json={"items": []}, headers=ADMIN).status_code == 422
        unknown = client.post("/v1/admin/items", json={"items": [row("a", "b", colour="red")]}, headers=ADMIN)
        assert unknown.status_code == 422 and "colour" in unknown.json()["message"]
        assert client.post("/v1/admin/items/delete", json={"ids": []}, headers=ADMIN).status_code == 422
    no_root = admin.model_copy(update={"image_root": None})
    with TestClient(create_app(no_root)) as client:
        response = client.post(
            "/v1/admin/items", json={"items": [row("a", "images/new-301.jpg")]}, headers=ADMIN
        )
        assert response.status_code == 422 and "FASHION_IMAGE_ROOT" in response.json()["message"]


def test_a_change_while_another_runs_is_409_busy(admin: Settings) -> None:
    with TestClient(create_app(admin)) as client, build_lock(admin.index_dir):
        response = client.post("/v1/admin/items/delete", json={"ids": ["item-0001"]}, headers=ADMIN)
    assert response.status_code == 409 and response.json()["code"] == "index_busy"


def test_cli_changes_are_picked_up_without_a_restart(admin: Settings, tiny_embedder: Embedder) -> None:
    watching = admin.model_copy(update={"reload_poll_s": 0.05})
    with TestClient(create_app(watching)) as client:
        update_index(
            admin.index_dir,
            tiny_embedder,
            create_extractor(tiny_embedder),
            BuildOptions(progress=False),
            delete_ids=["item-0002"],
        )  # fmt: skip  (what `fashion-search index delete` does from another process)
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["items"] != 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/readyz").json()["items"] == 7
        assert client.get("/v1/items/item-0002").status_code == 404

        # A damaged build published behind the service's back is refused; the current one keeps serving.
        update_index(
            admin.index_dir, tiny_embedder, create_extractor(tiny_embedder), BuildOptions(progress=False),
            delete_ids=["item-0004"],
        )  # fmt: skip
        (admin.index_dir.resolve() / VECTORS_NAME).write_bytes(b"\x00" * 64)
        time.sleep(0.5)
        assert client.get("/readyz").json()["items"] == 7
        assert client.get("/v1/items/item-0004").status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [("id", "x" * 256, True), ("id", "x" * 257, False), ("title", "t" * 1000, True),
     ("title", "t" * 1001, False), ("currency", "EUR", True), ("currency", "EURO", False),
     ("price", -1, False), ("in_stock", "maybe", False)],
)  # fmt: skip
def test_the_admin_api_and_a_feed_accept_the_same_rows(
    admin: Settings, tmp_path: Path, field: str, value: object, accepted: bool
) -> None:
    """One row model, one set of limits: what the admin API takes a feed takes, and what it refuses the feed
    reports as a bad row (before this, ids of 201-256 characters passed the API and were then skipped)."""
    from indexer.feed import read_feed

    wanted = row("limit-item", "images/new-301.jpg", **{field: value})
    feed = admin.image_root / "one.jsonl"
    feed.write_text(json.dumps(wanted) + "\n", encoding="utf-8")
    parsed = read_feed(feed)
    with TestClient(create_app(admin)) as client:
        answer = client.post("/v1/admin/items", json={"items": [wanted]}, headers=ADMIN)
    assert (answer.status_code == 200) is accepted, answer.text
    assert (len(parsed.items), len(parsed.bad_rows)) == ((1, 0) if accepted else (0, 1))
    if accepted:
        assert answer.json()["added"] == 1 and answer.json()["skipped"] == []


def test_admin_changes_pass_items_directly_without_temporary_files(
    admin: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a catalogue change wrote a temporary file")

    with TestClient(create_app(admin)) as client:
        for name in ("TemporaryDirectory", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
            monkeypatch.setattr(tempfile, name, refuse)
        items = [row("new-301", "images/new-301.jpg"), row("new-301", "images/new-302.jpg")]
        answer = client.post("/v1/admin/items", json={"items": items}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["added"] == 1
    assert body["skipped"] == ["new-301: duplicate id, first seen on line 1"]
