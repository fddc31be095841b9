"""End to end: uploads whose decode costs far more than their size, against a real `fashion-search serve`.

A progressive JPEG of 6000x6000 pixels with 500 scans (100 KB) took 12 s of CPU to decode and held a
search slot throughout; four of them made every other search wait for a slot and answer 503. A PNG with
thousands of malformed EXIF entries wrote one log line per entry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.serving import built_index, running_server, tiny_model_env
from tests.helpers import garment_image, jpeg_bytes
from tests.models.test_hostile_images import exif_flood_png, scan_bomb

pytestmark = pytest.mark.slow

BOMBS = 4  # the service's default max_concurrent_searches: before the fix they took every slot


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return tiny_model_env(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("log") / "serve.log"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str], log_path: Path) -> Iterator[str]:
    index = built_index(tmp_path_factory.mktemp("bombs"), 4, env)
    with running_server(index, env, log_path=log_path) as base:
        yield base


def post_image(base: str, name: str, data: bytes, timeout: float) -> tuple[int, float, str]:
    """Status, seconds and body of one search upload."""
    started = time.perf_counter()
    files = {"image": (name, data, "application/octet-stream")}
    response = httpx.post(f"{base}/v1/search", files=files, data={"top_k": "2"}, timeout=timeout)
    return response.status_code, time.perf_counter() - started, response.text


def test_scan_bombs_are_refused_fast_while_searches_answer(server: str) -> None:
    bomb, photo = scan_bomb(6000, 6000, 500), jpeg_bytes(garment_image(1))
    assert len(bomb) < 110_000
    with ThreadPoolExecutor(BOMBS + 1) as pool:
        bombs = [pool.submit(post_image, server, "bomb.jpg", bomb, 5) for _ in range(BOMBS)]
        time.sleep(0.05)  # the bombs first, so before the fix they held every slot
        search = pool.submit(post_image, server, "look.jpg", photo, 30)
        refused = [future.result() for future in bombs]
        status, seconds, body = search.result()
    for code, elapsed, text in refused:
        assert code == 422 and "500 scans; the limit is 64" in text, text
        assert elapsed < 1.0, f"the bomb was answered after {elapsed:.2f} s"
    assert status == 200, body
    assert seconds < 5, f"a legitimate search took {seconds:.2f} s beside the bombs"


def test_exif_flood_writes_one_log_line(server: str, log_path: Path) -> None:
    before = log_path.stat().st_size
    status, _, body = post_image(server, "flood.png", exif_flood_png(2000), 30)
    assert status == 200, body
    time.sleep(0.2)  # the server writes its log line after the response
    with log_path.open(encoding="utf-8", errors="replace") as log:
        log.seek(before)
        written = log.read()
    assert written.count("Skipping tag") <= 1, written[:2000]
    assert "2000 Pillow warning(s) while decoding a PNG image" in written
    assert len(written.encode()) < 4096
