"""End to end, over a real uvicorn process: the limits one anonymous client hits first (issue 16, items 2-4).

- Chunked bodies (no Content-Length) are refused at their route's limit as they stream in: the server's
  memory and its temp dir stay flat, and it answers after about the limit, not after the whole body.
- Content-Length with chunked encoding is a 400.
- With every search slot busy and many searches queued, the probes answer at once (they never queue for the
  thread pool) and the queued searches get their 503 within the documented wait.
- A half-sent request head, a silent connection and an idle keep-alive connection are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import select
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.e2e.serving import ServerProcess, built_index, server_process, tiny_model_env
from tests.helpers import garment_image, jpeg_bytes

pytestmark = pytest.mark.slow
MB = 1024 * 1024
HEADER_TIMEOUT_S = 1.0
KEEP_ALIVE_TIMEOUT_S = 1
# The probe test's server waits this long for a search slot. Shorter than the default 2 s so that 64 clients
# fill its one slot's queue however fast a search is on the machine (a fast one served 64 x 22 ms in 1.4 s,
# under 2 s, and almost nothing was refused).
QUEUE_TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**tiny_model_env(tmp_path_factory.mktemp("model")), "FASHION_RATE_LIMIT_PER_S": "0"}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    return built_index(tmp_path_factory.mktemp("catalogue"), 12, env)


@pytest.fixture(scope="module")
def server(
    index: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str, Path]]:
    """Default limits, one search slot (the probe test queues searches behind it), its own TMPDIR."""
    spool = tmp_path_factory.mktemp("server-tmp")
    settings = {
        "TMPDIR": str(spool),
        "FASHION_MAX_CONCURRENT_SEARCHES": "1",
        "FASHION_QUEUE_TIMEOUT_S": str(QUEUE_TIMEOUT_S),
    }
    with server_process(index, {**env, **settings}) as (process, base):
        yield process, base, spool


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


# --- chunked bodies --------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def temp_bytes(pid: int, spool: Path) -> int:
    """Bytes in the server's open files under its temp dir (spooled uploads are unlinked or O_TMPFILE: they
    never appear in a listing, only among the process's open files)."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(spool)):
                total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
    return total


class Watch:
    """Samples the server's RSS and temp-file bytes every 10 ms; the peaks above the baseline."""

    def __init__(self, pid: int, spool: Path) -> None:
        self.pid, self.spool = pid, spool
        self.baseline = rss_bytes(pid)
        self.rss_growth = 0
        self.temp_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.rss_growth = max(self.rss_growth, rss_bytes(self.pid) - self.baseline)
            self.temp_peak = max(self.temp_peak, temp_bytes(self.pid, self.spool))

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def send_chunked(
    port: int, head: bytes, body: Iterator[bytes], give_up: Callable[[], bool], timeout_s: float = 60
) -> tuple[bytes, int]:
    """Send `head`, then `body` in chunked encoding until the server answers (or `give_up()`); never holds
    more than one chunk. Returns the answer's bytes and how many body bytes went out."""
    answer, sent, pending, more = b"", 0, b"", True
    deadline = time.monotonic() + timeout_s
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head)
        while time.monotonic() < deadline and not give_up():
            readable, writable, _ = select.select([sock], [sock] if pending or more else [], [], 0.2)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
                if answer_complete(answer):
                    break
                continue
            if writable:
                if not pending:
                    chunk = next(body, None)
                    more = chunk is not None
                    pending = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b"0\r\n\r\n"
                try:
                    count = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    pending, more = b"", False  # the server closed its side; its answer may be waiting
                    continue
                sent += count
                pending = pending[count:]
    return answer, sent


def answer_complete(answer: bytes) -> bool:
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def repeated(total: int, piece: bytes) -> Iterator[bytes]:
    """`total` bytes of `piece` without ever building them: the client's memory stays flat too."""
    return itertools.repeat(piece, total // len(piece))


def chunked_head(path: str, content_type: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


def refuse_streamed(process: ServerProcess, spool: Path, head: bytes, body: Iterator[bytes], base: str):
    """Stream the body; stop once the server answers, or once its RSS has grown 200 MB (a failure)."""
    with Watch(process.pid, spool) as watch:
        started = time.monotonic()
        answer, sent = send_chunked(port_of(base), head, body, give_up=lambda: watch.rss_growth > 200 * MB)
        took_s = time.monotonic() - started
    return parse_answer(answer) if answer else (0, {}, b""), sent, took_s, watch


def test_a_200_mb_chunked_upload_is_refused_at_the_limit(server: tuple[ServerProcess, str, Path]) -> None:
    process, base, spool = server
    warm = httpx.post(
        f"{base}/v1/search", files={"image": ("a.jpg", jpeg_bytes(garment_image(1)))}, timeout=30
    )
    assert warm.status_code == 200, warm.text
    boundary = "fashionlimit"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = itertools.chain([part], repeated(200 * MB, b"\xff" * 65536), [f"\r\n--{boundary}--\r\n".encode()])
    head = chunked_head("/v1/search", f"multipart/form-data; boundary={boundary}")
    (status, headers, payload), sent, took_s, watch = refuse_streamed(process, spool, head, body, base)
    leftover = sum(path.stat().st_size for path in spool.rglob("*") if path.is_file())
    figures = f"sent {sent / MB:.1f} MB in {took_s:.2f} s, RSS +{watch.rss_growth / MB:.1f} MB, "
    figures += f"temp peak {watch.temp_peak / MB:.1f} MB, left {leftover} B"
    print(f"chunked upload: {status}, {figures}")  # noqa: T201 (the figures for the note)
    assert status == 413, (figures, payload[:300])
    assert json.loads(payload)["code"] == "image_too_large" and headers.get("connection") == "close"
    assert watch.rss_growth < 20 * MB, figures
    assert watch.temp_peak <= 12 * MB, figures  # the 10 MB limit (+ overhead), never the 200 MB
    assert sent < 100 * MB, figures  # answered after about the limit, not after the whole body
    assert leftover == 0 and temp_bytes(process.pid, spool) == 0, figures
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_an_800_mb_chunked_json_body_is_refused_at_the_limit(server: tuple[ServerProcess, str, Path]) -> None:
    process, base, spool = server
    created = httpx.post(f"{base}/v1/sessions", json={}, timeout=10)
    assert created.status_code == 201, created.text
    path = f"/v1/sessions/{created.json()['session_id']}/messages"
    said = httpx.post(f"{base}{path}", json={"sender": "shopper", "text": "hi"}, timeout=10)
    assert said.status_code == 201, said.text
    body = itertools.chain([b'{"sender": "shopper", "text": "'], repeated(800 * MB, b"x" * 65536), [b'"}'])
    (status, headers, payload), sent, took_s, watch = refuse_streamed(
        process, spool, chunked_head(path, "application/json"), body, base
    )
    figures = f"sent {sent / MB:.1f} MB in {took_s:.2f} s, RSS +{watch.rss_growth / MB:.1f} MB"
    print(f"chunked JSON: {status}, {figures}")  # noqa: T201 (the figures for the note)
    assert status == 413, (figures, payload[:300])
    assert json.loads(payload)["code"] == "request_too_large" and headers.get("connection") == "close"
    assert watch.rss_growth < 20 * MB, figures
    assert sent < 100 * MB, figures
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_content_length_and_chunked_together_is_400(server: tuple[ServerProcess, str, Path]) -> None:
    _, base, _ = server
    body = b'{"sender": "shopper", "text": "hi"}'
    head = (
        "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer, _ = send_chunked(port_of(base), head, iter([b"{}"]), give_up=lambda: False, timeout_s=10)
    status, headers, payload = parse_answer(answer)
    assert status == 400, answer[:300]
    assert json.loads(payload)["code"] == "bad_request" and headers.get("connection") == "close"


# --- probes under load -----------------------------------------------------------------------------------


def slow_photo() -> bytes:
    """Few bytes (a smooth picture compresses well), many pixels: tens of ms of decoding per search."""
    picture = Image.new("RGB", (1000, 1000), (200, 60, 60))
    ImageDraw.Draw(picture).ellipse((200, 200, 800, 800), fill=(30, 30, 160))
    return jpeg_bytes(picture, quality=80)


async def load_and_probe(base: str, searchers: int, seconds: float) -> tuple[list[float], list[float], dict]:
    """`searchers` clients search back to back for `seconds` while one client probes /healthz and /readyz.
    Returns the probe latencies, the 503s' latencies, and the count of each status."""
    photo = slow_photo()
    probes: list[float] = []
    refusals: list[float] = []
    statuses: dict[int, int] = {}
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=searchers + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def search() -> None:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                answer = await client.post("/v1/search", files={"image": ("big.jpg", photo, "image/jpeg")})
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 503:
                    refusals.append(time.monotonic() - started)

        async def probe() -> None:
            await asyncio.sleep(0.5)  # the queue is full by now
            while time.monotonic() < stop_at:
                for path in ("/healthz", "/readyz"):
                    started = time.monotonic()
                    assert (await client.get(path)).status_code == 200
                    probes.append(time.monotonic() - started)
                await asyncio.sleep(0.02)

        await asyncio.gather(probe(), *(search() for _ in range(searchers)))
    return probes, refusals, statuses


def test_probes_answer_fast_while_searches_queue(server: tuple[ServerProcess, str, Path]) -> None:
    _, base, _ = server
    probes, refusals, statuses = asyncio.run(load_and_probe(base, searchers=64, seconds=6))
    p50, worst = statistics.median(probes), max(probes)
    slowest_503 = max(refusals, default=0.0)
    p90_503 = sorted(refusals or [0.0])[int(len(refusals) * 0.9)]
    figures = f"probes p50 {p50 * 1000:.0f} ms, max {worst * 1000:.0f} ms over {len(probes)}; "
    figures += f"statuses {statuses}; 503 after p50 {statistics.median(refusals or [0]):.2f} s, "
    figures += f"p90 {p90_503:.2f} s, max {slowest_503:.2f} s"
    print(f"under load: {figures}")  # noqa: T201 (the figures for the note)
    assert statuses.get(503, 0) > 10 and statuses.get(200, 0) > 0, figures  # the queue really was full
    assert set(statuses) <= {200, 503}, figures
    assert p50 < 0.1, figures
    # The route's own wait is the queue timeout; the margin is the client's and the server's loop on a
    # small machine with 64 uploads in flight (a search queued for a pool thread first waited up to twice).
    assert p90_503 < QUEUE_TIMEOUT_S + 1.5 and slowest_503 < QUEUE_TIMEOUT_S + 2.5, figures


# --- idle and half-open connections ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient_server(index: Path, env: dict[str, str]) -> Iterator[str]:
    timeouts = {
        "FASHION_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "FASHION_KEEP_ALIVE_TIMEOUT_S": str(KEEP_ALIVE_TIMEOUT_S),
    }
    with server_process(index, {**env, **timeouts}) as (_, base):
        yield base


def open_for(sock: socket.socket, limit_s: float, trickle: bytes = b"") -> float:
    """Seconds until the server closes `sock` (at most `limit_s`), sending `trickle` a byte at a time, one
    every 0.2 s; whatever the server answers is read and dropped."""
    started = time.monotonic()
    sock.setblocking(False)
    pending = trickle
    while time.monotonic() - started < limit_s:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                if not sock.recv(65536):
                    break
            except ConnectionResetError:
                break
        elif pending:
            with contextlib.suppress(OSError):
                sock.send(pending[:1])
            pending = pending[1:]
    return time.monotonic() - started


def test_half_sent_and_silent_connections_are_closed(impatient_server: str) -> None:
    port = port_of(impatient_server)
    limit_s = HEADER_TIMEOUT_S + 1.5
    with (
        socket.create_connection(("127.0.0.1", port)) as half,
        socket.create_connection(("127.0.0.1", port)) as silent,
        socket.create_connection(("127.0.0.1", port)) as trickling,
    ):
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: half")
        results = {}
        threads = [
            threading.Thread(target=lambda n=n, s=s, t=t: results.update({n: open_for(s, limit_s + 2, t)}))
            for n, s, t in (
                ("half", half, b""),
                ("silent", silent, b""),
                ("trickling", trickling, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40),
            )
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(f"half-open sockets stay open: {results}")  # noqa: T201 (the figures for the note)
    assert all(HEADER_TIMEOUT_S - 0.3 < took < limit_s for took in results.values()), results
    assert httpx.get(f"{impatient_server}/healthz", timeout=5).status_code == 200


def test_an_idle_keep_alive_connection_is_closed(impatient_server: str) -> None:
    with socket.create_connection(("127.0.0.1", port_of(impatient_server)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while not answer_complete(answer):
            answer += sock.recv(65536)
        assert parse_answer(answer)[0] == 200
        took = open_for(sock, KEEP_ALIVE_TIMEOUT_S + 6)
    print(f"idle keep-alive connection closed after {took:.2f} s")  # noqa: T201 (the figures for the note)
    assert KEEP_ALIVE_TIMEOUT_S - 0.3 < took < KEEP_ALIVE_TIMEOUT_S + 1.0, took


def test_upgrade_requests_do_not_write_to_the_log(server: tuple[ServerProcess, str, Path]) -> None:
    """uvicorn logs two warnings per request that asks for a websocket; we serve none, so it is plain HTTP."""
    process, base, _ = server
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    with httpx.Client(base_url=base, timeout=10) as client:
        statuses = {client.get("/healthz", headers=upgrade).status_code for _ in range(20)}
    assert statuses == {200}
    assert "upgrade" not in process.output().lower()
