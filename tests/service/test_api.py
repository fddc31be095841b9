from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer.build import BuildOptions, build_index
from models.attributes.extractor import create_extractor
from models.embedder import create_embedder
from models.errors import ModelMismatchError
from models.spec import EmbedderSpec
from search.settings import Settings
from service.app import create_app
from tests.helpers import OTHER_TINY_MODEL, garment_image, jpeg_bytes, write_catalog


def upload(client: TestClient, data: bytes, media_type: str = "image/jpeg", **form: str):
    return client.post("/v1/search", files={"image": ("photo.jpg", data, media_type)}, data=form)


def test_search_returns_garments_with_ranked_matches(client: TestClient) -> None:
    response = upload(client, jpeg_bytes(garment_image(6), quality=95), top_k="3")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image_size"] == [64, 64]
    assert set(body["timings_ms"]) == {"decode", "detect", "embed", "attributes", "search", "rank", "total"}
    (garment,) = body["garments"]
    assert garment["box"] == [0, 0, 64, 64] and garment["category"] is None and garment["score"] == 1.0
    matches = garment["matches"]
    assert len(matches) == 3 and matches[0]["item_id"] == "item-0006"
    assert set(matches[0]) == {
        "item_id", "score", "visual_score", "attribute_score", "profile_boost", "matched", "mismatched",
        "title", "category", "brand", "price", "currency", "in_stock", "url", "attributes", "image_url",
        "group_id", "variants", "matched_image", "matched_image_link", "profile_match",
    }  # fmt: skip
    assert [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)


def test_category_form_field_filters_matches(client: TestClient) -> None:
    response = upload(client, jpeg_bytes(garment_image(6)), top_k="5", category=" Bag ")
    assert response.status_code == 200
    assert {m["category"] for m in response.json()["garments"][0]["matches"]} == {"bag"}


def test_exif_rotated_upload_reports_upright_size(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    response = upload(client, jpeg_bytes(Image.new("RGB", (80, 40), (9, 9, 9)), exif=exif.tobytes()))
    assert response.status_code == 200
    assert response.json()["image_size"] == [40, 80] and response.json()["garments"][0]["box"] == [
        0,
        0,
        40,
        80,
    ]


def test_item_lookup(client: TestClient) -> None:
    response = client.get("/v1/items/item-0003")
    assert response.status_code == 200
    assert (
        response.json()["title"] == "Test garment 3"
        and response.json()["attributes"]["colour"]["value"] == "yellow"
    )


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["items"] == 40 and ready["dimension"] == 32
    assert ready["categories"] == ["bag", "skirt", "top", "trousers"]
    assert client.get("/openapi.json").json()["paths"]["/v1/search"]["post"]


@pytest.mark.parametrize(
    ("make_request", "status", "code"),
    [
        (lambda c: upload(c, b"definitely not an image"), 415, "unsupported_media_type"),
        (lambda c: upload(c, jpeg_bytes(garment_image(1))[:100]), 422, "undecodable_image"),
        (lambda c: upload(c, b""), 422, "undecodable_image"),
        (lambda c: upload(c, b"x" * 200_001), 413, "image_too_large"),
        (lambda c: upload(c, jpeg_bytes(Image.new("RGB", (1100, 1000)))), 413, "image_too_large"),
        (lambda c: upload(c, b"hello", media_type="text/plain"), 415, "unsupported_media_type"),
        (lambda c: upload(c, jpeg_bytes(garment_image(1)), top_k="0"), 422, "invalid_request"),
        (lambda c: upload(c, jpeg_bytes(garment_image(1)), top_k="21"), 422, "invalid_request"),
        (lambda c: upload(c, jpeg_bytes(garment_image(1)), top_k="many"), 422, "invalid_request"),
        (lambda c: upload(c, jpeg_bytes(garment_image(1)), category="hats"), 422, "unknown_category"),
        (lambda c: c.post("/v1/search", data={"top_k": "3"}), 422, "invalid_request"),
        (lambda c: c.get("/v1/items/no-such-item"), 404, "item_not_found"),
        (lambda c: c.get("/no/such/route"), 404, "not_found"),
        (lambda c: c.get("/v1/search"), 405, "method_not_allowed"),
    ],
    ids=[
        "text-bytes",
        "truncated",
        "empty",
        "too-many-bytes",
        "too-many-pixels",
        "text-type",
        "top-k-zero",
        "top-k-over-max",
        "top-k-not-int",
        "unknown-category",
        "no-file",
        "unknown-item",
        "unknown-route",
        "wrong-method",
    ],  # fmt: skip
)
def test_every_error_maps_to_its_code(client: TestClient, make_request, status: int, code: str) -> None:
    response = make_request(client)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) - {"errors"} == {"type", "title", "status", "detail", "code", "message"}, body
    assert body["code"] == code and body["message"] and body["detail"] == body["message"]
    assert body["status"] == status and body["type"] == f"/problems/{code}"


def test_declared_oversized_body_is_refused_before_reading(client: TestClient) -> None:
    response = client.post(
        "/v1/search", content=b"x" * 10, headers={"content-length": "999999999", "content-type": "image/jpeg"}
    )
    assert response.status_code == 413 and response.json()["code"] == "image_too_large"
    assert "200000-byte limit" in response.json()["message"]  # the upload limit people can act on


def test_overload_gives_503_with_retry_after(client: TestClient) -> None:
    limiter = client.app.state.limiter
    assert client.portal is not None
    with contextlib.ExitStack() as held:  # every slot taken, on the app's event loop
        for _ in range(client.app.state.settings.max_concurrent_searches):
            held.enter_context(client.portal.wrap_async_context_manager(limiter.slot()))
        response = upload(client, jpeg_bytes(garment_image(1)))
    assert response.status_code == 503 and response.json()["code"] == "overloaded"
    assert response.headers["retry-after"] == "1"
    assert upload(client, jpeg_bytes(garment_image(1))).status_code == 200


def test_unexpected_error_is_generic_500_and_logged_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(client.app.state.searcher, "search", explode)
    with caplog.at_level(logging.ERROR):
        response = upload(client, jpeg_bytes(garment_image(1)))
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "/problems/internal_error",
        "title": "Internal server error",
        "status": 500,
        "detail": "internal server error",
        "code": "internal_error",
        "message": "internal server error",
    }
    assert "secret" not in response.text
    tracebacks = [r for r in caplog.records if r.exc_info and "secret internal detail" in str(r.exc_info[1])]
    assert len(tracebacks) == 1


def test_service_refuses_to_start_with_a_different_model(tmp_path: Path, settings: Settings) -> None:
    other = create_embedder(EmbedderSpec(kind="open_clip", model_name=OTHER_TINY_MODEL, pretrained="random"))
    out = tmp_path / "index"
    build_index(write_catalog(tmp_path, 4), out, other, BuildOptions(progress=False), create_extractor(other))
    app = create_app(settings.model_copy(update={"index_dir": out}))
    with pytest.raises(ModelMismatchError, match="was built with"), TestClient(app):
        pass


# The search waits for its slot on the event loop (its CPU work runs in the pool, below); the probes read
# only memory. Every other route is a plain def.
ASYNC_ROUTES = {"/v1/search", "/v1/search/batch", "/healthz", "/readyz"}


def test_only_the_search_and_the_probes_are_async() -> None:
    from service import routes

    for route in routes.router.routes:
        assert _is_coroutine(route.endpoint) == (route.path in ASYNC_ROUTES), route.path


def test_search_work_never_runs_on_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service import search_input, searching

    on_loop: dict[str, bool] = {}

    def watched(name: str, function):
        def call(*args, **kwargs):
            on_loop[name] = _on_event_loop()
            return function(*args, **kwargs)

        return call

    searcher = client.app.state.searcher
    monkeypatch.setattr(searcher, "search", watched("search", searcher.search))
    monkeypatch.setattr(searching, "decode_image", watched("decode", searching.decode_image))
    monkeypatch.setattr(search_input, "search_request", watched("options", search_input.search_request))
    assert upload(client, jpeg_bytes(garment_image(1))).status_code == 200
    assert on_loop == {"search": False, "decode": False, "options": False}


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _is_coroutine(function) -> bool:
    import inspect

    return inspect.iscoroutinefunction(function)
