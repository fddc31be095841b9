"""The search API as storefronts and apps call it (issue 18), over a real `fashion-search serve`: the
multipart form, JSON with a base64 image, JSON with an image URL (served by a local HTTP server, private
fetches allowed), JSON with a catalogue item (more like this); unknown options refused; min_score and
confident; paging from the kept ranking; batches; SSRF refusals; problem+json bodies and RateLimit headers."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.serving import built_index, running_server, tiny_model_env
from tests.helpers import garment_image, jpeg_bytes

pytestmark = pytest.mark.slow
N_ITEMS = 30
CONFIDENT_SCORE = 0.8
PHOTO = jpeg_bytes(garment_image(3, size=96), quality=95)


class PhotoServer(http.server.ThreadingHTTPServer):
    requests: list[str]


class PhotoHandler(http.server.BaseHTTPRequestHandler):
    server: PhotoServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        if self.path == "/photo.jpg":
            self._send(200, PHOTO, "image/jpeg")
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/photo.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/page.html":
            self._send(200, b"<html>not a photo</html>", "text/html")
        else:
            self._send(404, b"gone", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def photos() -> Iterator[PhotoServer]:
    server = PhotoServer(("127.0.0.1", 0), PhotoHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def photo_url(server: PhotoServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **tiny_model_env(tmp_path_factory.mktemp("model")),
        "FASHION_RATE_LIMIT_PER_S": "50",
        "FASHION_RATE_LIMIT_BURST": "1000",
        "FASHION_CONFIDENT_SCORE": str(CONFIDENT_SCORE),
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    return built_index(tmp_path_factory.mktemp("shop"), N_ITEMS, env)


@pytest.fixture(scope="module")
def base(shop: Path, env: dict[str, str]) -> Iterator[str]:
    """A server that may fetch private URLs (the photo server is on loopback) and serves item images."""
    served = {**env, "FASHION_URL_FETCH_ALLOW_PRIVATE": "true", "FASHION_IMAGE_ROOT": str(shop.parent)}
    with running_server(shop, served) as url:
        yield url


@pytest.fixture(scope="module")
def public_only(shop: Path, env: dict[str, str]) -> Iterator[str]:
    """The default: image URLs must be on public addresses."""
    with running_server(shop, env) as url:
        yield url


def form_search(base: str, photo: bytes = PHOTO, **fields: str) -> httpx.Response:
    files = {"image": ("photo.jpg", photo, "image/jpeg")}
    return httpx.post(f"{base}/v1/search", files=files, data=fields, timeout=60)


def json_search(base: str, body: object) -> httpx.Response:
    return httpx.post(f"{base}/v1/search", json=body, timeout=60)


def b64(photo: bytes = PHOTO) -> dict[str, dict[str, str]]:
    return {"image": {"base64": base64.b64encode(photo).decode()}}


def ids(garment: dict) -> list[str]:
    return [match["item_id"] for match in garment["matches"]]


def test_the_form_and_both_json_image_forms_find_the_same_matches(base: str, photos: PhotoServer) -> None:
    by_form = form_search(base, top_k="5")
    by_base64 = json_search(base, {**b64(), "top_k": 5})
    by_url = json_search(base, {"image": {"url": photo_url(photos, "/moved")}, "top_k": 5})
    for response in (by_form, by_base64, by_url):
        assert response.status_code == 200, response.text
    answers = [response.json() for response in (by_form, by_base64, by_url)]
    assert ids(answers[0]["garments"][0]) == ids(answers[1]["garments"][0]) == ids(answers[2]["garments"][0])
    assert "/photo.jpg" in photos.requests  # fetched by the server, after one redirect
    for answer in answers:
        assert answer["query_id"].startswith("q_") and answer["image_size"] == [96, 96]
        garment = answer["garments"][0]
        assert garment["next_offset"] == 5 and isinstance(garment["confident"], bool)
        first = garment["matches"][0]
        assert first["image_url"] == f"/v1/items/{first['item_id']}/image"
    image = httpx.get(base + answers[0]["garments"][0]["matches"][0]["image_url"], timeout=10)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"


def test_more_like_this_searches_with_the_item_and_never_returns_it(base: str) -> None:
    item = httpx.get(f"{base}/v1/items/item-0004", timeout=10).json()
    response = json_search(base, {"item_id": "item-0004", "top_k": 10})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["image_size"] is None and set(answer["timings_ms"]) == {"lookup", "search", "rank", "total"}
    (garment,) = answer["garments"]
    assert garment["box"] is None and garment["category"] == item["category"]
    assert garment["matches"] and "item-0004" not in ids(garment)
    assert {match["category"] for match in garment["matches"]} == {item["category"]}
    missing = json_search(base, {"item_id": "no-such-item"})
    assert missing.status_code == 404 and missing.json()["code"] == "item_not_found"


def test_unknown_options_are_refused_in_the_form_and_in_json(base: str) -> None:
    misspelt = form_search(base, min_scor="0.5")
    for response in (misspelt, form_search(base, offset="5"), form_search(base, box="1")):
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "invalid_request" and "the form accepts: image, top_k" in body["message"]
    response = json_search(base, {**b64(), "min_scor": 0.5})
    assert response.status_code == 422, response.text
    body = response.json()
    assert [error["field"] for error in body["errors"]] == ["min_scor"]
    assert "not an accepted option" in body["errors"][0]["message"]
    as_text = httpx.post(f"{base}/v1/search", data={"image": "not a file"}, timeout=10)
    assert as_text.status_code == 422
    assert "file" in as_text.json()["message"] and "UploadFile" not in as_text.text
    both = json_search(base, {**b64(), "item_id": "item-0001"})
    assert both.status_code == 422 and "exactly one of image, item_id or query_id" in both.text


def test_min_score_drops_weaker_matches(base: str) -> None:
    everything = form_search(base, top_k="20").json()["garments"][0]["matches"]
    cut = everything[len(everything) // 2]["score"]
    kept = form_search(base, top_k="20", min_score=str(cut)).json()["garments"][0]
    assert kept["matches"] and all(match["score"] >= cut for match in kept["matches"])
    assert ids(kept) == [match["item_id"] for match in everything if match["score"] >= cut]
    none = json_search(base, {**b64(), "min_score": 1.99}).json()["garments"][0]
    assert none["matches"] == [] and none["next_offset"] is None


def test_confident_says_whether_the_best_match_reaches_the_threshold(base: str) -> None:
    """A catalogue photo finds itself (score near 1); a flat grey square finds nothing close."""
    own = jpeg_bytes(garment_image(7), quality=95)
    grey = jpeg_bytes(garment_image(7).convert("L").point(lambda _: 128).convert("RGB"), quality=95)
    seen = {}
    for name, photo in (("own", own), ("grey", grey)):
        garment = form_search(base, photo).json()["garments"][0]
        best = garment["matches"][0]["score"]
        assert garment["confident"] == (best >= CONFIDENT_SCORE), (name, best)
        seen[name] = garment["confident"]
    assert seen == {"own": True, "grey": False}


def test_pages_come_from_the_kept_ranking_in_the_order_of_one_large_top_k(base: str) -> None:
    ten = json_search(base, {**b64(), "top_k": 10}).json()["garments"][0]
    first = json_search(base, {**b64(), "top_k": 5}).json()
    page = json_search(base, {"query_id": first["query_id"], "garment": 0, "offset": 5, "top_k": 5})
    assert page.status_code == 200, page.text
    second = page.json()
    assert second["query_id"] == first["query_id"] and set(second["timings_ms"]) == {"page"}
    assert ids(second["garments"][0]) == ids(ten)[5:10]
    assert not set(ids(second["garments"][0])) & set(ids(first["garments"][0]))
    assert second["garments"][0]["next_offset"] == 10
    last = json_search(base, {"query_id": first["query_id"], "garment": 0, "offset": N_ITEMS - 2, "top_k": 5})
    tail = last.json()["garments"][0]
    assert len(tail["matches"]) == 2 and tail["next_offset"] is None
    unknown = json_search(base, {"query_id": "q_unknown", "garment": 0, "offset": 5})
    assert unknown.status_code == 404 and unknown.json()["code"] == "query_not_found"
    wrong = json_search(base, {"query_id": first["query_id"], "garment": 3, "offset": 0})
    assert wrong.status_code == 422 and "garment 3" in wrong.json()["message"]
    mixed = json_search(base, {"query_id": first["query_id"], "garment": 0, "offset": 5, "text": "red"})
    assert mixed.status_code == 422 and "query_id, garment, offset and top_k only" in mixed.text


def test_a_batch_answers_in_order_and_one_bad_image_fails_only_itself(base: str) -> None:
    requests = [
        {**b64(), "top_k": 3},
        {"image": {"base64": base64.b64encode(b"not an image at all").decode()}},
        {"item_id": "item-0002", "top_k": 2},
        {**b64(), "top_kk": 3},
    ]
    response = httpx.post(f"{base}/v1/search/batch", json={"requests": requests}, timeout=60)
    assert response.status_code == 200, response.text
    good, bad, item, unknown = response.json()["responses"]
    assert len(good["garments"][0]["matches"]) == 3
    assert bad["status"] == 415 and bad["code"] == "unsupported_media_type"
    assert len(item["garments"][0]["matches"]) == 2
    assert unknown["status"] == 422 and unknown["errors"][0]["field"] == "top_kk"
    too_many = httpx.post(f"{base}/v1/search/batch", json={"requests": [b64()] * 17}, timeout=60)
    assert too_many.status_code == 422 and "1 to 16" in too_many.json()["message"]


def test_image_urls_to_private_addresses_are_refused(public_only: str, photos: PhotoServer) -> None:
    before = len(photos.requests)
    for url in (
        photo_url(photos, "/photo.jpg"),
        "http://localhost:9/photo.jpg",
        "http://10.1.2.3/photo.jpg",
        "http://169.254.169.254/latest/meta-data/",
    ):
        response = json_search(public_only, {"image": {"url": url}})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["code"] == "url_not_allowed", url
    assert len(photos.requests) == before  # nothing was fetched
    gopher = json_search(public_only, {"image": {"url": "file:///etc/passwd"}})
    assert gopher.status_code == 422 and gopher.json()["code"] == "url_not_allowed"


def test_url_failures_are_clear_4xx(base: str, photos: PhotoServer) -> None:
    missing = json_search(base, {"image": {"url": photo_url(photos, "/nothing.jpg")}})
    assert missing.status_code == 422 and missing.json()["code"] == "url_fetch_failed"
    assert missing.json()["upstream_status"] == 404
    page = json_search(base, {"image": {"url": photo_url(photos, "/page.html")}})
    assert page.status_code == 415 and page.json()["code"] == "unsupported_media_type"


def test_errors_are_problem_details_and_rate_limits_are_announced(base: str) -> None:
    ok = form_search(base, top_k="1")
    bad = json_search(base, {"top_k": 1})
    for response in (ok, bad):
        assert response.headers["ratelimit-policy"].startswith('"')
        assert ";r=" in response.headers["ratelimit"]
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    body = bad.json()
    assert {"type", "title", "status", "detail", "code", "message"} <= set(body) and body["status"] == 422


def test_the_openapi_schema_types_the_json_options(base: str) -> None:
    schema = httpx.get(f"{base}/openapi.json", timeout=10).json()
    content = schema["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    body = schema["components"]["schemas"]["SearchBody"]
    assert body["additionalProperties"] is False
    assert body["properties"]["filters"]["anyOf"][0]["$ref"].endswith("/FiltersIn")
    assert body["properties"]["weights"]["anyOf"][0]["type"] == "object"
    assert body["properties"]["top_k"]["anyOf"][0]["minimum"] == 1
    assert json.dumps(schema["components"]["schemas"]["FiltersIn"]).count("examples") >= 1
    assert "/v1/search/batch" in schema["paths"]
