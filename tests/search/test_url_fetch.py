"""Fetching an image URL against a real local HTTP server: redirects, limits, timeouts, non-images, and
the SSRF guard (non-public hosts refused before any connection, every hop re-checked, addresses pinned)."""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

import pytest
from PIL import Image

from models.errors import ImageTooLargeError, UnsupportedImageTypeError
from search import url_fetch
from search.errors import InvalidRequestError, UrlFetchError, UrlNotAllowedError
from search.url_fetch import address_class, fetch_image, parse_url

LIMIT = 20_000  # max_bytes in these tests


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalServer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.close_connection = True
        with self.server.lock:
            self.server.requests.append((self.path, dict(self.headers)))
        path = self.path.split("?", 1)[0]
        try:
            self.route(path)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def route(self, path: str) -> None:
        port = self.server.server_address[1]
        if path == "/image.png":
            self.answer(200, PNG, "image/png")
        elif path.startswith("/hops/"):
            left = int(path.removeprefix("/hops/"))
            if left == 0:
                self.answer(200, PNG, "image/png")
            else:
                self.answer(302, b"", "text/plain", Location=f"/hops/{left - 1}")  # relative
        elif path == "/to-loopback":
            self.answer(301, b"", "text/plain", Location=f"http://127.0.0.1:{port}/image.png")
        elif path == "/no-location":
            self.answer(302, b"", "text/plain")
        elif path == "/missing":
            self.answer(404, b"not here", "text/plain")
        elif path == "/broken":
            self.answer(500, b"oops", "text/plain")
        elif path == "/big":
            self.answer(200, PNG + b"\0" * LIMIT, "image/png")
        elif path == "/big-chunked":
            self.big_chunked()
        elif path == "/page.html":
            self.answer(200, b"<!doctype html><html><body>shop</body></html>", "text/html")
        elif path == "/lying.jpg":
            self.answer(200, b"<!doctype html><html><body>shop</body></html>", "image/jpeg")
        elif path == "/drip":
            self.drip(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n", PNG * 100)
        elif path == "/drip-headers":
            self.drip(b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"a" * 10_000 + b"\r\n\r\n")
        elif path == "/stall":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            time.sleep(3)
        else:
            self.answer(404, b"", "text/plain")

    def answer(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def big_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for _ in range(3 * LIMIT // 1000):
            self.wfile.write(b"3e8\r\n" + b"\0" * 1000 + b"\r\n")  # 0x3e8 = 1000
        self.wfile.write(b"0\r\n\r\n")

    def drip(self, head: bytes, rest: bytes) -> None:
        """A byte every 50 ms: never idle for a read timeout, but endless for a fetch."""
        self.wfile.write(head)
        for byte in rest[:200]:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.05)


class LocalServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    thread = threading.Thread(target=local.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield local
    finally:
        local.shutdown()
        local.server_close()


def fetch(url: str, allow_private: bool = True, timeout_s: float = 2.0, **kwargs: int) -> bytes:
    return fetch_image(url, max_bytes=LIMIT, timeout_s=timeout_s, allow_private=allow_private, **kwargs)


# --- fetching from a server that private fetches allow ---------------------------------------------


def test_the_image_comes_back_byte_identical_with_our_request_headers(server: LocalServer) -> None:
    assert fetch(server.url("/image.png")) == PNG
    [(path, headers)] = server.requests
    assert path == "/image.png"
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["User-Agent"] == "fashion-search/0.1 (+image fetch)"
    assert headers["Accept"] == "image/*"
    assert "Cookie" not in headers


@pytest.mark.parametrize("hops", [1, 3])
def test_up_to_three_redirects_are_followed(server: LocalServer, hops: int) -> None:
    assert fetch(server.url(f"/hops/{hops}")) == PNG
    assert [path for path, _ in server.requests] == [f"/hops/{n}" for n in range(hops, -1, -1)]


def test_a_fourth_redirect_is_too_many(server: LocalServer) -> None:
    with pytest.raises(UrlFetchError, match="too many redirects") as caught:
        fetch(server.url("/hops/4"))
    assert caught.value.upstream_status is None
    assert len(server.requests) == 4  # the fifth hop is never requested
    assert fetch(server.url("/hops/1"), max_redirects=1) == PNG
    with pytest.raises(UrlFetchError, match="more than 0 times"):
        fetch(server.url("/hops/1"), max_redirects=0)


def test_an_absolute_redirect_to_another_loopback_path_is_followed_when_private_is_allowed(
    server: LocalServer,
) -> None:
    assert fetch(server.url("/to-loopback")) == PNG
    assert [path for path, _ in server.requests] == ["/to-loopback", "/image.png"]


def test_a_redirect_without_location_is_a_fetch_error(server: LocalServer) -> None:
    with pytest.raises(UrlFetchError, match="302 without a Location") as caught:
        fetch(server.url("/no-location"))
    assert caught.value.upstream_status == 302


@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/broken", 500)])
def test_an_upstream_error_status_is_a_fetch_error_with_that_status(
    server: LocalServer, path: str, status: int
) -> None:
    with pytest.raises(UrlFetchError, match=f"HTTP {status}") as caught:
        fetch(server.url(path))
    assert caught.value.upstream_status == status


def test_a_declared_length_over_the_limit_is_refused_before_reading(server: LocalServer) -> None:
    with pytest.raises(ImageTooLargeError, match=f"{len(PNG) + LIMIT} bytes; the limit is {LIMIT}"):
        fetch(server.url("/big"))


def test_a_chunked_body_over_the_limit_is_cut_off_while_streaming(server: LocalServer) -> None:
    with pytest.raises(ImageTooLargeError, match=f"over the limit of {LIMIT} bytes"):
        fetch(server.url("/big-chunked"))


@pytest.mark.parametrize(("path", "declared"), [("/page.html", "text/html"), ("/lying.jpg", "image/jpeg")])
def test_content_that_is_not_an_image_is_refused_whatever_it_declares(
    server: LocalServer, path: str, declared: str
) -> None:
    with pytest.raises(UnsupportedImageTypeError, match=f"not an image.*Content-Type '{declared}'"):
        fetch(server.url(path))


@pytest.mark.parametrize("path", ["/drip", "/drip-headers"])
def test_a_slow_drip_cannot_outlast_the_total_deadline(server: LocalServer, path: str) -> None:
    started = time.monotonic()
    with pytest.raises(UrlFetchError, match="timed out") as caught:
        fetch(server.url(path), timeout_s=0.5, max_redirects=1)  # a total deadline of 1 s
    assert time.monotonic() - started < 2.5
    assert caught.value.upstream_status is None


def test_a_stalled_server_hits_the_read_timeout(server: LocalServer) -> None:
    started = time.monotonic()
    with pytest.raises(UrlFetchError, match="timed out"):
        fetch(server.url("/stall"), timeout_s=0.3)
    assert time.monotonic() - started < 1.5


def test_a_refused_connection_is_a_fetch_error_without_status() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens on it once closed
    with pytest.raises(UrlFetchError, match="refused the connection") as caught:
        fetch(f"http://127.0.0.1:{port}/image.png")
    assert caught.value.upstream_status is None


def test_a_tls_failure_is_a_fetch_error(server: LocalServer) -> None:
    with pytest.raises(UrlFetchError, match="TLS") as caught:
        fetch(f"https://127.0.0.1:{server.port}/image.png")  # the server speaks plain HTTP
    assert caught.value.upstream_status is None


def test_a_name_that_does_not_resolve_is_a_fetch_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(
        UrlFetchError, match="could not resolve the image URL's host 'shop.example'"
    ) as caught:
        fetch("http://shop.example/a.jpg", allow_private=False)
    assert caught.value.upstream_status is None


def test_the_log_line_leaves_out_the_query_string(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="search.url_fetch"):
        fetch(server.url("/image.png?token=secret"))
        with pytest.raises(UrlFetchError):
            fetch(server.url("/missing?token=secret"))
    assert [record.levelname for record in caplog.records] == ["INFO", "INFO"]
    assert "/image.png" in caplog.records[0].getMessage()
    assert "secret" not in caplog.text
    assert server.requests[0][0] == "/image.png?token=secret"  # the query itself was sent


# --- the SSRF guard --------------------------------------------------------------------------------


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/image.png", "'127.0.0.1' is a loopback address"),
        ("http://localhost:{port}/image.png", "'localhost' resolves to a loopback address"),
        ("http://[::1]/", "'::1' is a loopback address"),
        ("http://[::ffff:127.0.0.1]:{port}/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local \\(cloud metadata\\)"),
        ("http://100.64.0.1/", "shared \\(CGNAT\\)"),
        ("http://0.0.0.0:{port}/", "unspecified"),
        ("http://2130706433:{port}/", "'2130706433' is a loopback address"),
        ("http://0x7f.1:{port}/", "'0x7f.1' is a loopback address"),
        ("http://127.1:{port}/", "loopback"),
    ],
)
def test_non_public_hosts_are_refused_before_any_connection(
    server: LocalServer, no_connections: None, url: str, reason: str
) -> None:
    with pytest.raises(UrlNotAllowedError, match=f"{reason}.*only public hosts are fetched"):
        fetch(url.format(port=server.port), allow_private=False)
    assert server.requests == []


def test_every_redirect_hop_is_checked_again(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A public shop (faked: its name is let through and pinned to the local server) that redirects to a
    loopback address: the second hop is refused without being requested."""
    checked = url_fetch.checked_addresses

    def shop_is_public(target: url_fetch.Target, allow_private: bool) -> list[str]:
        return ["127.0.0.1"] if target.host == "shop.example" else checked(target, allow_private)

    monkeypatch.setattr(url_fetch, "checked_addresses", shop_is_public)
    with pytest.raises(UrlNotAllowedError, match="'127.0.0.1' is a loopback address"):
        fetch(server.url("/to-loopback", host="shop.example"), allow_private=False)
    [(path, headers)] = server.requests
    assert path == "/to-loopback" and headers["Host"] == f"shop.example:{server.port}"


def test_the_connection_goes_to_the_checked_address_without_a_second_lookup(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    connected: list[tuple[str, int]] = []
    real_connect = socket.create_connection

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    real_getaddrinfo = socket.getaddrinfo

    def numeric_only(host: str, *args: object, **kwargs: object) -> object:
        if host != "127.0.0.1":  # create_connection parses the pinned address through getaddrinfo
            raise AssertionError(f"a second DNS lookup, of {host}")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        connected.append(address)
        return real_connect(address, timeout=timeout)

    monkeypatch.setattr(url_fetch, "resolve", resolve)
    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)
    monkeypatch.setattr(socket, "create_connection", connect)
    assert fetch(server.url("/hops/1", host="shop.example")) == PNG
    assert lookups == ["shop.example", "shop.example"]  # one per hop
    assert connected == [("127.0.0.1", server.port)] * 2
    assert {headers["Host"] for _, headers in server.requests} == {f"shop.example:{server.port}"}


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://shop.example/a.jpg",
        "gopher://shop.example/",
        "data:image/png;base64,iVBORw0KGgo=",
        "shop.example/a.jpg",
        "//shop.example/a.jpg",
        "http://user:pass@shop.example/a.jpg",
    ],
)
def test_other_schemes_and_credentials_are_not_allowed(no_connections: None, url: str) -> None:
    with pytest.raises(UrlNotAllowedError):
        fetch(url, allow_private=True)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://shop.example/" + "a" * 4979, "is 5000 characters; the limit is 2048"),
        ("http://[::1/", "malformed"),
        ("http://shop.example:99999/", "malformed"),
        ("http://shop example/", "spaces or control characters"),
        ("http://shop.example/a\r\nX-Injected: 1", "spaces or control characters"),
        ("http:///a.jpg", "has no valid host"),
        ("http://shop<script>.example/", "has no valid host"),
    ],
)
def test_malformed_urls_are_invalid_requests(no_connections: None, url: str, said: str) -> None:
    with pytest.raises(InvalidRequestError, match=said) as caught:
        fetch(url, allow_private=True)
    assert not isinstance(caught.value, UrlNotAllowedError)


def test_hosts_and_paths_are_encoded_for_the_request_line() -> None:
    target = parse_url("https://Bücher.example/größe.jpg?q=ä&x=1#part")
    assert target.host == "xn--bcher-kva.example" and target.port == 443
    assert target.path == "/gr%C3%B6%C3%9Fe.jpg?q=%C3%A4&x=1"
    assert target.host_header == "xn--bcher-kva.example"
    assert parse_url("http://[::1]:8080").host_header == "[::1]:8080"
    assert parse_url("http://shop.example/a.jpg?token=secret").logged == "http://shop.example/a.jpg"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "private"),  # deprecated site-local
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "link-local (cloud metadata)"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::1", "reserved"),  # local-use NAT64
        ("2001:db8::1", "private"),  # documentation
        ("8.8.8.8", None),
        ("151.101.1.69", None),
        ("2001:4860:4860::8888", None),
        ("::ffff:8.8.8.8", None),
        ("2002:808:808::", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_address_classes(address: str, reason: str | None) -> None:
    assert address_class(ip_address(address)) == reason
