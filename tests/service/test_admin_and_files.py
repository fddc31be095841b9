"""Hot reload over the admin API, catalogue images from the image root only, deadlines, and no server
paths in any answer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from indexer.manifest import VECTORS_NAME
from models.embedder import Embedder
from search.settings import Settings
from service.app import create_app
from service.errors import redact_paths
from tests.helpers import garment_image, index_feed, jpeg_bytes, write_catalog

ADMIN = {"X-Admin-Key": "admin-key-0123456789abcdef"}


@pytest.fixture
def own_index(tmp_path: Path, tiny_embedder: Embedder) -> Path:
    out = tmp_path / "served" / "index"
    index_feed(write_catalog(tmp_path / "feed-a", 6), out, tiny_embedder)
    return out


@pytest.fixture
def admin_settings(settings: Settings, own_index: Path) -> Settings:
    return settings.model_copy(update={"index_dir": own_index, "admin_key": SecretStr(ADMIN["X-Admin-Key"])})


def test_reload_swaps_in_a_new_build_and_refuses_a_corrupt_one(
    admin_settings: Settings, own_index: Path, tmp_path: Path, tiny_embedder: Embedder
) -> None:
    with TestClient(create_app(admin_settings)) as client:
        first = client.get("/readyz").json()
        index_feed(write_catalog(tmp_path / "feed-b", 9), own_index, tiny_embedder)
        reloaded = client.post("/v1/admin/reload", headers=ADMIN)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["changed"] is True and reloaded.json()["items"] == 9
        assert client.get("/readyz").json()["items"] == 9 and first["items"] == 6
        assert client.get("/v1/items/item-0008").status_code == 200

        index_feed(write_catalog(tmp_path / "feed-c", 3), own_index, tiny_embedder)
        (own_index.resolve() / VECTORS_NAME).write_bytes(b"\x00garbage")
        refused = client.post("/v1/admin/reload", headers=ADMIN)
        assert refused.status_code == 409 and refused.json()["code"] == "index_rejected"
        assert "vectors.faiss" in refused.json()["message"]
        assert str(tmp_path) not in refused.text and "/tmp" not in refused.text
        search = client.post(
            "/v1/search", files={"image": ("a.jpg", jpeg_bytes(garment_image(8)), "image/jpeg")}
        )
        assert search.status_code == 200 and client.get("/readyz").json()["items"] == 9  # old one serves
        assert search.json()["garments"][0]["matches"][0]["item_id"] == "item-0008"


def test_item_images_come_from_the_image_root_only(
    settings: Settings, own_index: Path, tmp_path: Path
) -> None:
    feed_dir = tmp_path / "feed-a"
    inside = settings.model_copy(update={"index_dir": own_index, "image_root": feed_dir})
    with TestClient(create_app(inside)) as client:
        served = client.get("/v1/items/item-0002/image")
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        assert served.content == (feed_dir / "images" / "item-0002.jpg").read_bytes()
        # The file now escapes the root through a symlink: refused, and no path is named.
        secret = tmp_path / "secret.jpg"
        shutil.copy(feed_dir / "images" / "item-0003.jpg", secret)
        (feed_dir / "images" / "item-0003.jpg").unlink()
        os.symlink(secret, feed_dir / "images" / "item-0003.jpg")
        escaped = client.get("/v1/items/item-0003/image")
        traversal = client.get("/v1/items/..%2F..%2Fetc%2Fpasswd/image")
        unknown = client.get("/v1/items/nope/image")
    assert escaped.status_code == 404 and escaped.json()["code"] == "image_not_found"
    assert str(tmp_path) not in escaped.text
    assert traversal.status_code == 404 and "root:" not in traversal.text
    assert unknown.status_code == 404 and unknown.json()["code"] == "item_not_found"

    elsewhere = settings.model_copy(update={"index_dir": own_index, "image_root": tmp_path / "other"})
    with TestClient(create_app(elsewhere)) as client:
        assert client.get("/v1/items/item-0002/image").status_code == 404
    off = settings.model_copy(update={"index_dir": own_index})
    with TestClient(create_app(off)) as client:
        response = client.get("/v1/items/item-0002/image")
    assert response.status_code == 404 and "image root" in response.json()["message"]


def test_a_search_past_its_deadline_stops_with_503(settings: Settings) -> None:
    hurried = settings.model_copy(update={"request_timeout_s": 1e-6})
    with TestClient(create_app(hurried)) as client:
        response = client.post(
            "/v1/search", files={"image": ("a.jpg", jpeg_bytes(garment_image(1)), "image/jpeg")}
        )
    assert response.status_code == 503 and response.json()["code"] in ("deadline_exceeded", "overloaded")
    assert response.headers["Retry-After"] == "1"


def test_deadline_is_checked_between_stages(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    searcher = client.app.state.searcher
    detect = searcher.detector.detect

    def slow_detect(image):
        time.sleep(0.3)
        return detect(image)

    monkeypatch.setattr(searcher.detector, "detect", slow_detect)
    client.app.state.settings = client.app.state.settings.model_copy(update={"request_timeout_s": 0.2})
    response = client.post(
        "/v1/search", files={"image": ("a.jpg", jpeg_bytes(garment_image(1)), "image/jpeg")}
    )
    assert response.status_code == 503 and response.json()["code"] == "deadline_exceeded"
    assert "after the detect stage" in response.json()["message"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("/srv/index.builds/1/vectors.faiss is missing", "<...>/vectors.faiss is missing"),
        (
            "weights file /home/app/models/w.safetensors not found",
            "weights file <...>/w.safetensors not found",
        ),
        ("at /usr/src/faiss/impl/index_read.cpp:3251: bad", "at <...>/index_read.cpp:3251: bad"),
        ("the directory /var/lib/fashion/ is empty", "the directory <...>/ is empty"),
        ("index at var/index disagrees", "index at var/index disagrees"),  # relative: no server layout
        ("price_min 10 is above price_max 5", "price_min 10 is above price_max 5"),
        ("see https://shop.example/p/1", "see https://shop.example/p/1"),
        ("open_clip:local-dir:/models/siglip/None", "open_clip:local-dir:<...>/None"),
        ("cannot read /srv/my data (prod)/index/vectors.faiss: bad", "cannot read <...>/vectors.faiss: bad"),
        ("'/home/a b/w.safetensors' is missing", "'<...>/w.safetensors' is missing"),
        ("files /srv/a/b, /srv/c/d (two)", "files <...>/b, <...>/d (two)"),  # two paths stay two
        ("POST /v1/search and /tmp/x", "POST <...>/search and <...>/x"),
    ],
)
def test_error_messages_never_carry_absolute_paths(message: str, expected: str) -> None:
    assert redact_paths(message) == expected
