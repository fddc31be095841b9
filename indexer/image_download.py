"""Images of shop feeds from http(s) URLs into a content-addressed cache that builds and syncs share: each
distinct URL once, a few at a time, with timeouts, a streamed byte limit, bounded redirects, backoff retries
(5xx, 429, timeouts, connection errors; never other 4xx), magic-byte sniffing, and revalidation of cached
URLs (If-None-Match / If-Modified-Since; a 304 reuses the blob). A bad URL is a reason, never an exception."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import urljoin, urlsplit

from tqdm import tqdm

from indexer.feed import BadRow, CatalogItem, is_url
from indexer.publish import BuildError
from models.errors import UnsupportedImageTypeError, shown
from models.images import sniff_format

log = logging.getLogger(__name__)

__all__ = [
    "DownloadOptions",
    "DownloadStats",
    "Downloaded",
    "ImageCache",
    "download_images",
    "localise_items",
]

CHUNK_BYTES = 64 * 1024
SNIFF_BYTES = 32  # enough for every signature `sniff_format` knows
LOG_EVERY_S = 10.0
STALE_PART_S = 3600.0  # temp files older than this are left-overs of a killed process
USER_AGENT = "fashion-search-indexer"
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class DownloadOptions:
    cache_dir: Path  # content-addressed download cache, reused across builds and syncs
    max_bytes: int = 20 * 2**20
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0  # per receive
    retries: int = 3  # extra tries on 5xx, 429, timeouts, connection errors; never on other 4xx
    backoff_s: float = 0.5  # doubled each retry
    concurrency: int = 8
    max_redirects: int = 3
    progress: bool = True


@dataclass(frozen=True)
class Downloaded:
    path: Path  # the cached file holding the bytes
    sha256: str  # of the bytes
    revalidated: bool  # True: a 304 confirmed the cached copy; False: the bytes came in this call's 200


@dataclass(frozen=True)
class DownloadStats:
    fetched: int = 0  # 200 responses (new bytes, or bytes of a URL without ETag / Last-Modified)
    revalidated: int = 0  # 304 responses: the cached copy reused, no body sent
    failed: int = 0
    bytes: int = 0  # downloaded bytes of the fetched images
    seconds: float = 0.0

    @property
    def items_per_s(self) -> float:
        """Distinct URLs handled (fetched, revalidated or failed) per second."""
        done = self.fetched + self.revalidated + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.fetched} fetched ({self.bytes / 1e6:.1f} MB), {self.revalidated} revalidated, "
            f"{self.failed} failed in {self.seconds:.1f} s ({self.items_per_s:.1f} images/s)"
        )


class _Failure(Exception):
    def __init__(self, reason: str, retry: bool = False, timeout: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry or timeout
        self.timeout = timeout


@dataclass(frozen=True)
class _Entry:
    url: str
    sha256: str
    size: int
    etag: str = ""
    last_modified: str = ""


class ImageCache:
    """The cache on disk: `meta/<h[:2]>/<h>.json` per URL (h = sha256 of the URL: url, etag, last_modified,
    sha256, size, fetched_at) and content-addressed blobs `blobs/<s[:2]>/<s>` (s = sha256 of the bytes).
    Every file is written to `tmp/` and moved into place with os.replace, so a killed download never
    leaves a half file, and threads or processes sharing the cache see either the old or the new entry.
    BuildError (with the path) when the folder cannot be created or written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        try:
            for folder in (root / "meta", root / "blobs", self._tmp):
                folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self._tmp, suffix=".probe")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise BuildError(f"image download cache {root} cannot be written: {exc}") from exc
        self._remove_stale_parts()

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def _meta_path(self, url: str) -> Path:
        key = hashlib.sha256(url.encode()).hexdigest()
        return self.root / "meta" / key[:2] / f"{key}.json"

    def lookup(self, url: str) -> _Entry | None:
        """The entry of `url` whose blob is present and intact; None otherwise (then it is fetched anew)."""
        try:
            meta = json.loads(self._meta_path(url).read_text(encoding="utf-8"))
            validators = (meta.get("etag") or "", meta.get("last_modified") or "")
            entry = _Entry(meta["url"], meta["sha256"], int(meta["size"]), *validators)
            blob = self.blob_path(entry.sha256)
            if entry.url != url or blob.stat().st_size != entry.size:
                return None
            with blob.open("rb") as file:
                if hashlib.file_digest(file, "sha256").hexdigest() != entry.sha256:
                    log.warning("cached image %s of %s is corrupt; fetching it again", blob, url)
                    return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return entry

    def part_file(self) -> tuple[IO[bytes], Path]:
        """A new temp file in the cache (same file system as the blobs, so os.replace is atomic)."""
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        return os.fdopen(fd, "wb"), Path(name)

    def add_blob(self, part: Path, sha256: str) -> Path:
        blob = self.blob_path(sha256)
        blob.parent.mkdir(exist_ok=True)
        os.replace(part, blob)
        return blob

    def record(self, entry: _Entry) -> None:
        meta = dataclasses.asdict(entry) | {"fetched_at": datetime.now(UTC).isoformat(timespec="seconds")}
        path = self._meta_path(entry.url)
        path.parent.mkdir(exist_ok=True)
        file, part = self.part_file()
        try:
            with file:
                file.write(json.dumps(meta, sort_keys=True).encode())
            os.replace(part, path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    def _remove_stale_parts(self) -> None:
        cutoff = time.time() - STALE_PART_S
        for part in self._tmp.glob("*.part"):
            with contextlib.suppress(OSError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()


def download_images(
    urls: Iterable[str], options: DownloadOptions
) -> tuple[dict[str, Downloaded], dict[str, str]]:
    """Each distinct URL once, with bounded concurrency: (url -> Downloaded, url -> failure reason)."""
    done, failed, _ = _download_all(urls, options)
    return done, failed


def localise_items(
    items: list[CatalogItem], options: DownloadOptions
) -> tuple[list[CatalogItem], list[BadRow], DownloadStats]:
    """Download every URL of the items (`image_url` and the URL entries of `extra_images`). An item comes
    back with `image` the cached file (image_url kept) and `extra_files` the local files of its extra images
    (`extra_images` keeps the links, as the feed named them); a failed extra image is dropped from both with
    a warning; an item whose main image fails is a BadRow. Items without URLs pass through untouched."""
    urls = [url for item in items for url in (item.image_url, *item.extra_images) if url and is_url(url)]
    done, failed, stats = _download_all(urls, options)
    good: list[CatalogItem] = []
    bad: list[BadRow] = []
    for item in items:
        if not item.image_url and not any(is_url(extra) for extra in item.extra_images):
            good.append(item)
            continue
        if item.image_url and item.image_url not in done:
            bad.append(BadRow(item.line, item.item_id, f"image {item.image_url}: {failed[item.image_url]}"))
            continue
        kept: list[tuple[str, Path]] = []
        for extra in item.extra_images:
            if not is_url(extra) or extra in done:
                kept.append((extra, done[extra].path if is_url(extra) else Path(extra)))
            else:
                log.warning("line %d: extra image %s dropped: %s", item.line, extra, failed[extra])
        image = done[item.image_url].path if item.image_url else item.image
        links, files = tuple(link for link, _ in kept), tuple(path for _, path in kept)
        good.append(dataclasses.replace(item, image=image, extra_images=links, extra_files=files))
    return good, bad, stats


def _download_all(
    urls: Iterable[str], options: DownloadOptions
) -> tuple[dict[str, Downloaded], dict[str, str], DownloadStats]:
    cache = ImageCache(options.cache_dir)
    distinct = list(dict.fromkeys(urls))
    total = len(distinct)
    done: dict[str, Downloaded] = {}
    failed: dict[str, str] = {}
    sizes = 0
    start = last_log = time.monotonic()
    if not distinct:
        return done, failed, DownloadStats()
    with (
        ThreadPoolExecutor(max_workers=max(1, options.concurrency), thread_name_prefix="download") as pool,
        tqdm(total=total, unit="image", desc="downloading", disable=not options.progress) as bar,
    ):
        futures = {pool.submit(_fetch, url, options, cache): url for url in distinct}
        for future in as_completed(futures):
            url = futures[future]
            try:
                result, size = future.result()
            except _Failure as exc:
                failed[url] = exc.reason
            except Exception as exc:  # a bug or an unforeseen OS error must not sink the other URLs
                log.exception("downloading %s failed unexpectedly", url)
                failed[url] = f"unexpected error: {type(exc).__name__}: {exc}"
            else:
                done[url] = result
                sizes += size
            bar.update(1)
            now = time.monotonic()
            if now - last_log >= LOG_EVERY_S:
                last_log = now
                count = len(done) + len(failed)
                log.info("downloaded %d/%d images, %.1f images/s", count, total, count / (now - start))
    revalidated = sum(result.revalidated for result in done.values())
    stats = DownloadStats(len(done) - revalidated, revalidated, len(failed), sizes, time.monotonic() - start)
    log.info("images: %s", stats)
    return done, failed, stats


def _fetch(url: str, options: DownloadOptions, cache: ImageCache) -> tuple[Downloaded, int]:
    """One URL with retries: (the Downloaded, bytes received); _Failure with the reason."""
    entry = cache.lookup(url)
    tries = options.retries + 1
    for attempt in range(tries):
        try:
            return _fetch_once(url, entry, options, cache)
        except _Failure as exc:
            if not exc.retry:
                raise
            if attempt + 1 == tries:
                reason = "timed out" if exc.timeout else exc.reason
                raise _Failure(f"{reason} after {tries} tries") from exc
            log.debug("retrying %s after %s", url, exc.reason)
            time.sleep(options.backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def _fetch_once(
    url: str, entry: _Entry | None, options: DownloadOptions, cache: ImageCache
) -> tuple[Downloaded, int]:
    current = url
    for _ in range(options.max_redirects + 1):
        connection = _connect(current, options)
        try:
            headers = {"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"}
            if entry is not None and entry.etag:
                headers["If-None-Match"] = entry.etag
            if entry is not None and entry.last_modified:
                headers["If-Modified-Since"] = entry.last_modified
            parts = urlsplit(current)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", target, None, headers)
            response = connection.getresponse()
            status = response.status
            if status in REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise _Failure(f"HTTP {status} redirect without a Location")
                current = urljoin(current, location)
                continue
            if status == 304 and entry is not None:
                cache.record(_updated(entry, response))
                return Downloaded(cache.blob_path(entry.sha256), entry.sha256, revalidated=True), 0
            if status != 200:
                retry = status == 429 or status >= 500
                raise _Failure(f"HTTP {status} {response.reason}".strip(), retry=retry)
            return _receive(url, response, options, cache)
        except TimeoutError as exc:
            raise _Failure("timed out", timeout=True) from exc
        except http.client.IncompleteRead as exc:
            raise _Failure(f"connection closed mid-body ({len(exc.partial)} bytes)", retry=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Failure(f"connection failed: {type(exc).__name__}: {exc}", retry=True) from exc
        finally:
            connection.close()
    raise _Failure(f"too many redirects (more than {options.max_redirects})")


def _connect(url: str, options: DownloadOptions) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _Failure(f"unsupported URL scheme {shown(scheme)}: only http and https")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise _Failure(f"invalid URL: {exc}") from exc
    if not host:
        raise _Failure("invalid URL: no host")
    kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    connection = kind(host, port, timeout=options.connect_timeout_s)
    try:
        connection.connect()
    except OSError as exc:
        connection.close()
        timeout = isinstance(exc, TimeoutError)
        raise _Failure(f"connection failed: {exc}", retry=True, timeout=timeout) from exc
    if connection.sock is not None:
        connection.sock.settimeout(options.read_timeout_s)
    return connection


def _updated(entry: _Entry, response: http.client.HTTPResponse) -> _Entry:
    return dataclasses.replace(
        entry,
        etag=response.getheader("ETag") or entry.etag,
        last_modified=response.getheader("Last-Modified") or entry.last_modified,
    )


def _receive(
    url: str, response: http.client.HTTPResponse, options: DownloadOptions, cache: ImageCache
) -> tuple[Downloaded, int]:
    """Stream a 200 body into a temp file (limit, sniff, hash), then into the cache."""
    limit = options.max_bytes
    if response.length is not None and response.length > limit:  # http.client's Content-Length
        raise _Failure(f"larger than the {limit} byte limit (Content-Length {response.length})")
    content_type = response.getheader("Content-Type") or "none"
    digest = hashlib.sha256()
    head = b""
    size = 0
    file, part = cache.part_file()
    try:
        with file:
            while chunk := response.read(min(CHUNK_BYTES, limit + 1 - size)):
                size += len(chunk)
                if size > limit:
                    raise _Failure(f"larger than the {limit} byte limit")
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                    if len(head) >= SNIFF_BYTES:
                        _sniff(head, content_type)
                digest.update(chunk)
                file.write(chunk)
        if missing := response.length:  # http.client ends a short Content-Length body quietly
            raise _Failure(f"connection closed mid-body ({size} of {size + missing} bytes)", retry=True)
        if len(head) < SNIFF_BYTES:
            _sniff(head, content_type)
        sha256 = digest.hexdigest()
        blob = cache.add_blob(part, sha256)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    cache.record(_updated(_Entry(url=url, sha256=sha256, size=size), response))
    return Downloaded(blob, sha256, revalidated=False), size


def _sniff(head: bytes, content_type: str) -> None:
    try:
        sniff_format(head)
    except UnsupportedImageTypeError as exc:
        raise _Failure(f"not an image (Content-Type {content_type}, starts {head[:16]!r})") from exc
