"""Images from URLs against a real HTTP server on 127.0.0.1: timeouts, retries, redirects, byte limits,
sniffing, the revalidating content-addressed cache, bounded concurrency, items localised to cached files."""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from indexer.feed import IMAGE_NOT_DOWNLOADED, BadRow, CatalogItem
from indexer.image_download import DownloadOptions, ImageCache, download_images, localise_items
from indexer.publish import BuildError

Route = Callable[["Handler"], None]
BIG = 50 * 10**6


@dataclass
class State:
    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up (timeouts, byte limits) are expected here


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        with state.lock:
            state.hits[path] += 1
            state.requests.append((path, dict(self.headers.items())))
            state.active += 1
            state.max_active = max(state.max_active, state.active)
        try:
            state.routes.get(path, lambda handler: handler.send(404))(self)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with state.lock:
                state.active -= 1

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.server.state.statuses.append(status)
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Site:
    state: State
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def site() -> Iterator[Site]:
    server = Server(("127.0.0.1", 0), Handler)
    server.state = State()
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield Site(server.state, server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def options(tmp_path: Path) -> DownloadOptions:
    return DownloadOptions(tmp_path / "cache", read_timeout_s=1.0, backoff_s=0.001, progress=False)


def png(tmp_path: Path, colour: str = "red", name: str = "image.png") -> bytes:
    path = tmp_path / name
    Image.new("RGB", (16, 12), colour).save(path)
    return path.read_bytes()


def serve(site: Site, path: str, body: bytes, content_type: str = "image/png") -> None:
    site.state.routes[path] = lambda handler: handler.send(200, body, {"Content-Type": content_type})


def blobs(options: DownloadOptions) -> list[Path]:
    return sorted(path for path in (options.cache_dir / "blobs").rglob("*") if path.is_file())


def leftovers(options: DownloadOptions) -> list[Path]:
    return list((options.cache_dir / "tmp").iterdir())


def fetch_one(url: str, options: DownloadOptions) -> tuple[object, str | None]:
    done, failed = download_images([url], options)
    return done.get(url), failed.get(url)


def test_a_png_is_downloaded_into_a_content_addressed_blob(
    site: Site, options: DownloadOptions, tmp_path: Path
) -> None:
    body = png(tmp_path)
    serve(site, "/a.png", body)
    done, failed = download_images([site.url("/a.png")] * 3, options)
    assert failed == {} and site.state.hits["/a.png"] == 1  # each distinct URL once
    got = done[site.url("/a.png")]
    sha = hashlib.sha256(body).hexdigest()
    assert got.sha256 == sha and got.revalidated is False
    assert got.path == options.cache_dir / "blobs" / sha[:2] / sha and got.path.read_bytes() == body
    assert blobs(options) == [got.path] and leftovers(options) == []


def test_a_stalled_server_times_out_and_is_retried(site: Site, options: DownloadOptions) -> None:
    site.state.routes["/slow"] = lambda handler: time.sleep(0.6)
    fast = DownloadOptions(options.cache_dir, read_timeout_s=0.15, retries=2, backoff_s=0.001, progress=False)
    started = time.monotonic()
    got, reason = fetch_one(site.url("/slow"), fast)
    assert got is None and reason == "timed out after 3 tries"
    assert site.state.hits["/slow"] == 3 and time.monotonic() - started < 3


@pytest.mark.parametrize(("status", "reason"), [(404, "HTTP 404 Not Found"), (403, "HTTP 403 Forbidden")])
def test_client_errors_fail_at_once(site: Site, options: DownloadOptions, status: int, reason: str) -> None:
    site.state.routes["/gone"] = lambda handler: handler.send(status)
    assert fetch_one(site.url("/gone"), options) == (None, reason)
    assert site.state.hits["/gone"] == 1  # never retried


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retried_until_the_image_comes(
    site: Site, options: DownloadOptions, tmp_path: Path, status: int
) -> None:
    body = png(tmp_path)

    def flaky(handler: Handler) -> None:
        if site.state.hits["/flaky"] == 1:
            handler.send(status)
        else:
            handler.send(200, body, {"Content-Type": "image/png"})

    site.state.routes["/flaky"] = flaky

    got, reason = fetch_one(site.url("/flaky"), options)
    assert reason is None and got is not None and site.state.hits["/flaky"] == 2


def test_a_server_error_that_persists_fails_after_every_try(site: Site, options: DownloadOptions) -> None:
    site.state.routes["/down"] = lambda handler: handler.send(503)
    assert fetch_one(site.url("/down"), options)[1] == "HTTP 503 Service Unavailable after 4 tries"
    assert site.state.hits["/down"] == 4


def test_a_refused_connection_is_a_reason(options: DownloadOptions) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reason = fetch_one(f"http://127.0.0.1:{port}/x.png", options)[1]
    assert reason is not None and reason.startswith("connection failed") and reason.endswith("after 4 tries")


def test_redirects_are_followed_but_a_loop_fails(
    site: Site, options: DownloadOptions, tmp_path: Path
) -> None:
    serve(site, "/real.png", png(tmp_path))
    site.state.routes["/moved"] = lambda handler: handler.send(301, headers={"Location": "/real.png"})
    site.state.routes["/loop"] = lambda handler: handler.send(302, headers={"Location": site.url("/loop")})
    done, failed = download_images([site.url("/moved"), site.url("/loop")], options)
    assert site.url("/moved") in done
    assert "redirects" in failed[site.url("/loop")]
    assert site.state.hits["/loop"] == options.max_redirects + 1


@pytest.mark.parametrize("scheme", ["ftp://127.0.0.1/a.png", "file:///etc/hostname", "http:///no-host"])
def test_only_http_urls_are_fetched(options: DownloadOptions, scheme: str) -> None:
    reason = fetch_one(scheme, options)[1]
    assert reason is not None and ("scheme" in reason or "no host" in reason)


def big_body(handler: Handler, framing: str) -> None:
    """A PNG signature and then 50 MB, with an honest Content-Length, none (read to close), or chunked."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    if framing == "length":
        handler.send_header("Content-Length", str(BIG))
    elif framing == "chunked":
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    handler.end_headers()
    chunk = b"\x89PNG\r\n\x1a\n" + bytes(2**16 - 8)
    for _ in range(BIG // len(chunk)):
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if framing == "chunked" else chunk)


@pytest.mark.parametrize("framing", ["length", "none", "chunked"])
def test_a_body_over_the_byte_limit_fails_while_streaming(
    site: Site, options: DownloadOptions, framing: str
) -> None:
    site.state.routes["/huge.png"] = lambda handler: big_body(handler, framing)
    reason = fetch_one(site.url("/huge.png"), options)[1]
    assert reason is not None and reason.startswith(f"larger than the {20 * 2**20} byte limit")
    assert ("Content-Length" in reason) == (framing == "length")  # a declared size fails before reading
    assert site.state.hits["/huge.png"] == 1 and blobs(options) == [] and leftovers(options) == []


def test_text_served_as_jpeg_is_not_an_image(site: Site, options: DownloadOptions) -> None:
    serve(site, "/fake.jpg", b"<html><body>Sorry, this product is gone</body></html>", "image/jpeg")
    reason = fetch_one(site.url("/fake.jpg"), options)[1]
    assert reason is not None and reason.startswith("not an image (Content-Type image/jpeg")
    assert site.state.hits["/fake.jpg"] == 1 and blobs(options) == []


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_connection_closed_mid_body_leaves_no_blob(
    site: Site, options: DownloadOptions, tmp_path: Path, framing: str
) -> None:
    body = png(tmp_path) + bytes(4000)

    def cut(handler: Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        if framing == "length":
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[:100])
        else:
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            handler.wfile.write(b"%x\r\n%s" % (len(body), body[:100]))
        handler.close_connection = True

    site.state.routes["/cut.png"] = cut

    slow = DownloadOptions(options.cache_dir, retries=1, backoff_s=0.001, progress=False)
    reason = fetch_one(site.url("/cut.png"), slow)[1]
    assert (
        reason is not None and reason.startswith("connection closed mid-body") and "after 2 tries" in reason
    )
    assert blobs(options) == [] and leftovers(options) == []
    assert list((options.cache_dir / "meta").rglob("*.json")) == []


def test_the_cache_revalidates_with_the_etag(site: Site, options: DownloadOptions, tmp_path: Path) -> None:
    images = {"current": png(tmp_path, "red")}

    def item(handler: Handler) -> None:
        body = images["current"]
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        if handler.headers.get("If-None-Match") == etag:
            handler.send(304, headers={"ETag": etag})
        else:
            handler.send(200, body, {"Content-Type": "image/png", "ETag": etag})

    site.state.routes["/item.png"] = item

    url = site.url("/item.png")
    first = download_images([url], options)[0][url]
    again = download_images([url], options)[0][url]
    assert again.revalidated is True and again.path == first.path and again.sha256 == first.sha256
    assert site.state.statuses == [200, 304] and "If-None-Match" in site.state.requests[1][1]

    images["current"] = png(tmp_path, "blue")
    changed = download_images([url], options)[0][url]
    assert changed.revalidated is False and changed.sha256 != first.sha256
    assert changed.path.read_bytes() == images["current"] and site.state.statuses[-1] == 200

    items = [CatalogItem("a", IMAGE_NOT_DOWNLOADED, "t", "top", image_url=url)]
    stats = localise_items(items, options)[2]
    assert (stats.fetched, stats.revalidated, stats.failed) == (0, 1, 0) and stats.bytes == 0


def test_revalidation_by_last_modified(site: Site, options: DownloadOptions, tmp_path: Path) -> None:
    body = png(tmp_path)
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    def last_modified(handler: Handler) -> None:
        if handler.headers.get("If-Modified-Since") == stamp:
            handler.send(304)
        else:
            handler.send(200, body, {"Content-Type": "image/png", "Last-Modified": stamp})

    site.state.routes["/lm.png"] = last_modified

    url = site.url("/lm.png")
    download_images([url], options)
    assert download_images([url], options)[0][url].revalidated is True
    assert site.state.statuses == [200, 304]


def test_without_validators_every_call_fetches(site: Site, options: DownloadOptions, tmp_path: Path) -> None:
    serve(site, "/plain.png", png(tmp_path))
    url = site.url("/plain.png")
    first = download_images([url], options)[0][url]
    second = download_images([url], options)[0][url]
    assert site.state.statuses == [200, 200] and second.revalidated is False and second.path == first.path
    assert not any(
        "If-None-Match" in headers or "If-Modified-Since" in headers for _, headers in site.state.requests
    )


def test_a_corrupt_blob_is_fetched_again(site: Site, options: DownloadOptions, tmp_path: Path) -> None:
    body = png(tmp_path)
    site.state.routes["/c.png"] = lambda handler: handler.send(200, body, {"ETag": '"v1"'})
    url = site.url("/c.png")
    first = download_images([url], options)[0][url]
    first.path.write_bytes(b"garbage")
    again = download_images([url], options)[0][url]
    assert again.revalidated is False and again.path.read_bytes() == body
    assert "If-None-Match" not in site.state.requests[1][1]  # no 304 may confirm a broken copy


def test_concurrency_is_bounded(site: Site, options: DownloadOptions, tmp_path: Path) -> None:
    body = png(tmp_path)

    def slow(handler: Handler) -> None:
        time.sleep(0.1)
        handler.send(200, body, {"Content-Type": "image/png"})

    site.state.routes["/slow.png"] = slow

    three = DownloadOptions(options.cache_dir, concurrency=3, progress=False)
    urls = [site.url(f"/slow.png?i={i}") for i in range(12)]
    done, failed = download_images(urls, three)
    assert len(done) == 12 and failed == {}
    assert 2 <= site.state.max_active <= 3
    assert len(blobs(options)) == 1  # twelve URLs, one content


def test_localise_items_points_items_at_cached_files(
    site: Site, options: DownloadOptions, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serve(site, "/main.png", png(tmp_path, "red"))
    serve(site, "/side.png", png(tmp_path, "green"))
    local = tmp_path / "local.png"
    png(tmp_path, "blue", "local.png")
    extras = (site.url("/side.png"), site.url("/missing.png"), str(local))
    main = site.url("/main.png")
    with_urls = CatalogItem(
        "a", IMAGE_NOT_DOWNLOADED, "t", "top", line=2, image_url=main, extra_images=extras
    )
    broken = CatalogItem("b", IMAGE_NOT_DOWNLOADED, "t", "top", line=7, image_url=site.url("/nope.png"))
    plain = CatalogItem("c", local, "t", "top", line=9, extra_images=(str(local),))

    with caplog.at_level(logging.WARNING, logger="indexer.image_download"):
        good, bad, stats = localise_items([with_urls, broken, plain], options)

    assert bad == [BadRow(7, "b", f"image {site.url('/nope.png')}: HTTP 404 Not Found")]
    assert [item.item_id for item in good] == ["a", "c"] and good[1] is plain
    localised = good[0]
    assert localised.image_url == site.url("/main.png") and localised.image.read_bytes()[:4] == b"\x89PNG"
    assert localised.image.is_relative_to(options.cache_dir)
    assert localised.extra_images == (site.url("/side.png"), str(local))  # the links, as the feed named them
    side, kept = localised.extra_files
    assert side.is_relative_to(options.cache_dir) and side.read_bytes()[:4] == b"\x89PNG" and kept == local
    assert "missing.png dropped: HTTP 404 Not Found" in caplog.text
    assert (stats.fetched, stats.revalidated, stats.failed) == (2, 0, 2) and stats.bytes > 0
    assert stats.items_per_s > 0


def test_an_unwritable_cache_is_an_error_before_any_download(site: Site, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    serve(site, "/a.png", png(tmp_path))
    with pytest.raises(BuildError, match="image download cache .*file/cache cannot be written"):
        download_images([site.url("/a.png")], DownloadOptions(blocker / "cache", progress=False))
    assert site.state.hits["/a.png"] == 0
    with pytest.raises(BuildError):
        ImageCache(blocker)
