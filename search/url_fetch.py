"""Server-side fetch of an image URL (`POST /v1/search` with `{"image": {"url": ...}}`).

Every hop of a fetch is checked before anything is sent: http or https only, no credentials, a bounded
URL; the host is resolved once and every address it resolves to must be public (unless private fetches
are allowed), and the connection goes to one of those checked addresses, never to a second lookup that
DNS rebinding could answer differently. Redirects are followed a few times, each hop checked again.
Each receive waits at most `timeout_s` and none starts after the fetch's total deadline, so a server
that drips a byte a second cannot hold a worker. The byte limit is enforced while the body streams in,
and the content must be an image by its magic bytes (`models.images.sniff_format`), whatever
Content-Type it declared.
"""

from __future__ import annotations

import http.client
import io
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

from models.errors import FashionSearchError, ImageTooLargeError, UnsupportedImageTypeError, shown
from models.images import SUPPORTED_LIST, sniff_format
from search.errors import InvalidRequestError, UrlFetchError, UrlNotAllowedError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

MAX_URL_CHARS = 2048
USER_AGENT = "fashion-search/0.1 (+image fetch)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024
HOST_NAME = re.compile(r"[a-z0-9_.-]+")
CGNAT = ip_network("100.64.0.0/10")
NAT64 = ip_network("64:ff9b::/96")  # well-known prefix: the last 32 bits are an IPv4 address
METADATA = ip_address("169.254.169.254")
TLS = ssl.create_default_context()  # verifies certificates and host names

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Target:
    """One hop's URL, checked and taken apart."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA), lower case, without brackets
    port: int
    path: str  # path and query, percent-encoded, for the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"

    @property
    def logged(self) -> str:
        """The URL without its query string, which may hold tokens."""
        return f"{self.scheme}://{self.host_header}{self.path.split('?', 1)[0]}"


def fetch_image(
    url: str, *, max_bytes: int, timeout_s: float, allow_private: bool, max_redirects: int = 3
) -> bytes:
    """The bytes of the image at `url`. Blocking: call it from a worker thread, not the event loop.

    Raises InvalidRequestError (a malformed or overlong URL), UrlNotAllowedError (not http(s), or a
    non-public host), UrlFetchError (unreachable, TLS failure, timeout, upstream error status, too many
    redirects), ImageTooLargeError (over `max_bytes`) and UnsupportedImageTypeError (not an image)."""
    started = time.monotonic()
    deadline = started + timeout_s * (max_redirects + 1)
    target = parse_url(url)
    try:
        for redirects in range(max_redirects + 1):
            addresses = checked_addresses(target, allow_private)
            location, body, content_type = _get(target, addresses, max_bytes, timeout_s, deadline)
            if location is None:
                _check_image(body, content_type)
                elapsed_ms = (time.monotonic() - started) * 1000
                log.info(
                    "fetched image %s: %d bytes, %d redirects, %.0f ms",
                    target.logged,
                    len(body),
                    redirects,
                    elapsed_ms,
                )
                return body
            target = parse_url(urljoin(target.url, location))
        raise UrlFetchError(f"too many redirects: the image URL redirected more than {max_redirects} times")
    except FashionSearchError as exc:
        log.info("image fetch %s failed: %s", target.logged, exc)
        raise


def parse_url(url: str) -> Target:
    if len(url) > MAX_URL_CHARS:
        raise InvalidRequestError(f"the image URL is {len(url)} characters; the limit is {MAX_URL_CHARS}")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise InvalidRequestError("the image URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise InvalidRequestError(f"the image URL {shown(url)} is malformed") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlNotAllowedError("only http:// and https:// image URLs can be fetched")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowedError("image URLs with a user name or password are not fetched")
    if not host or not (HOST_NAME.fullmatch(host) or (":" in host and _literal(host))):
        raise InvalidRequestError(f"the image URL {shown(url)} has no valid host")
    safe = "!$%&'()*+,/:;=?@~"  # kept as they are; spaces, quotes, brackets and non-ASCII are encoded
    path = quote(parts.path or "/", safe=safe) + (f"?{quote(parts.query, safe=safe)}" if parts.query else "")
    return Target(url, scheme, host, port or (443 if scheme == "https" else 80), path)


def _literal(host: str) -> IPAddress | None:
    """`host` as an IP address, in any form the C resolver accepts (127.1, 2130706433, 0x7f.1)."""
    try:
        return ip_address(host)
    except ValueError:
        pass
    try:
        return IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, from one lookup; a literal address is itself."""
    literal = _literal(host)
    if literal is not None:
        return [str(literal)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UrlFetchError(f"could not resolve the image URL's host {shown(host)}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(target: Target, allow_private: bool) -> list[str]:
    """The addresses to connect to for `target`; UrlNotAllowedError if any of them is not public."""
    addresses = resolve(target.host, target.port)
    if allow_private:
        return addresses
    for address in addresses:
        reason = address_class(ip_address(address))
        if reason is not None:
            verb = "is" if _literal(target.host) else "resolves to"
            raise UrlNotAllowedError(
                f"the image URL's host {shown(target.host)} {verb} a {reason} address; "
                "only public hosts are fetched"
            )
    return addresses


def address_class(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address ("loopback", "private", ...), or None when it is public. IPv6
    forms that carry an IPv4 address (IPv4-mapped, 6to4, NAT64) are judged by that address."""
    if isinstance(ip, IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in NAT64:
            embedded = IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_class(embedded)
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip == METADATA, "link-local (cloud metadata)"),
        (ip.is_link_local, "link-local"),
        (ip in CGNAT, "shared (CGNAT)"),
        (ip.is_multicast, "multicast"),
        (ip.is_reserved, "reserved"),
        (ip.is_private or isinstance(ip, IPv6Address) and ip.is_site_local, "private"),
        (not ip.is_global, "non-public"),
    )
    return next((reason for failed, reason in checks if failed), None)


class _DeadlineStream(io.RawIOBase):
    """What http.client reads the answer through: each receive waits at most `timeout_s`, and none
    starts after `deadline`, however slowly the server drips its headers or body."""

    def __init__(self, sock: socket.socket, timeout_s: float, deadline: float) -> None:
        super().__init__()
        self.sock, self.timeout_s, self.deadline = sock, timeout_s, deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the fetch ran past its deadline")
        self.sock.settimeout(min(self.timeout_s, remaining))
        return self.sock.recv_into(buffer)


def _connect(target: Target, addresses: list[str], timeout_s: float, deadline: float) -> socket.socket:
    """A connection to the first checked address that answers (TLS for https, verified against the
    URL's host name)."""
    error: OSError = TimeoutError("the fetch ran past its deadline")
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            sock = socket.create_connection((address, target.port), timeout=min(timeout_s, remaining))
        except OSError as exc:
            error = exc
            continue
        if target.scheme != "https":
            return sock
        try:
            return TLS.wrap_socket(sock, server_hostname=target.host)
        except BaseException:
            sock.close()
            raise
    raise error


def _get(
    target: Target, addresses: list[str], max_bytes: int, timeout_s: float, deadline: float
) -> tuple[str | None, bytes, str | None]:
    """One GET: (the Location of a redirect, or None; the body of a 2xx answer; its Content-Type)."""
    request = (
        f"GET {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: image/*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    )
    sock: socket.socket | None = None
    try:
        sock = _connect(target, addresses, timeout_s, deadline)
        sock.sendall(request.encode("ascii"))
        response = http.client.HTTPResponse(_DeadlineStream(sock, timeout_s, deadline))  # type: ignore[arg-type]
        response.begin()
        status = response.status
        if status in REDIRECT_STATUSES:
            location = response.getheader("Location")
            if not location:
                raise UrlFetchError(f"the image URL answered {status} without a Location", status)
            return location, b"", None
        if not 200 <= status < 300:
            raise UrlFetchError(f"the image URL answered HTTP {status}", upstream_status=status)
        return None, _read_body(response, max_bytes), response.getheader("Content-Type")
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(target.host, exc) from exc
    finally:
        if sock is not None:
            sock.close()


def _read_body(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    declared = (response.getheader("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageTooLargeError(f"the image at the URL is {int(declared)} bytes; the limit is {max_bytes}")
    chunks, size = [], 0
    while chunk := response.read1(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise ImageTooLargeError(f"the image at the URL is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _network_error(host: str, exc: OSError | http.client.HTTPException) -> UrlFetchError:
    if isinstance(exc, TimeoutError):  # socket, TLS and our deadline timeouts alike
        return UrlFetchError(f"fetching the image from {shown(host)} timed out")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return UrlFetchError(f"the TLS certificate of {shown(host)} is not valid ({exc.verify_message})")
    if isinstance(exc, ssl.SSLError):
        return UrlFetchError(f"the TLS handshake with {shown(host)} failed")
    if isinstance(exc, ConnectionRefusedError):
        return UrlFetchError(f"{shown(host)} refused the connection")
    if isinstance(exc, http.client.HTTPException):
        return UrlFetchError(f"{shown(host)} sent an incomplete or malformed HTTP answer")
    return UrlFetchError(f"could not fetch the image from {shown(host)} ({exc.strerror or 'network error'})")


def _check_image(body: bytes, content_type: str | None) -> None:
    """By the magic bytes; the declared Content-Type only goes into the message."""
    try:
        sniff_format(body)
    except UnsupportedImageTypeError as exc:
        declared = f"Content-Type {shown(content_type)}" if content_type else "no Content-Type"
        raise UnsupportedImageTypeError(
            f"the content at the image URL is not an image in a supported format ({SUPPORTED_LIST}); "
            f"it declared {declared}"
        ) from exc
