"""Faults on real processes: SIGTERM while searches run, kill -9 during an index build, a corrupt index and
missing weights at start. Each test fails when the protection it checks is taken away."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from indexer.manifest import MANIFEST_NAME, METADATA_NAME, VECTORS_NAME
from indexer.publish import PARTIAL_SUFFIX, builds_root
from tests.e2e.serving import (
    ROOT,
    built_index,
    cli,
    connection_refused,
    free_port,
    metric_value,
    running_server,
    start_server,
    tiny_model_env,
    wait_until,
    write_slow_catalog,
)
from tests.helpers import garment_image, jpeg_bytes, write_catalog

pytestmark = pytest.mark.slow
SEARCHES = 8
QUIET = {"FASHION_RATE_LIMIT_PER_S": "0"}  # these tests send bursts from one address on purpose


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**tiny_model_env(tmp_path_factory.mktemp("model")), **QUIET}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    return built_index(tmp_path_factory.mktemp("faults"), 24, env)


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _search(base: str, photo: bytes) -> int | str:
    """Status code of one search, or the name of the transport error that ended it."""
    try:
        files = {"image": ("street.jpg", photo, "image/jpeg")}
        return httpx.post(f"{base}/v1/search", files=files, data={"top_k": "3"}, timeout=60).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def _inside(base: str) -> float:
    """Searches the service has accepted and not answered: running plus queued for a slot."""
    return metric_value(base, "fashion_searches_in_flight") + metric_value(base, "fashion_searches_waiting")


def test_sigterm_drains_accepted_searches_and_exits_0(index: Path, env: dict[str, str]) -> None:
    shutdown_timeout_s = 30
    serve_env = {
        **env,
        "FASHION_MAX_CONCURRENT_SEARCHES": "1",  # one at a time: the rest queue, so the drain takes a while
        "FASHION_QUEUE_TIMEOUT_S": "60",
        "FASHION_REQUEST_TIMEOUT_S": "60",
        "FASHION_SHUTDOWN_TIMEOUT_S": str(shutdown_timeout_s),
    }
    photo = jpeg_bytes(garment_image(5, size=4000), quality=90)  # 16 Mpx: a few hundred ms per search
    process, base = start_server(index, serve_env)
    try:
        with ThreadPoolExecutor(SEARCHES) as pool:
            answers = [pool.submit(_search, base, photo) for _ in range(SEARCHES)]
            inside = f"all {SEARCHES} searches inside the service"
            wait_until(lambda: _inside(base) == SEARCHES, 60, inside, interval_s=0.1)
            process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            wait_until(lambda: connection_refused(_port(base)), 10, "the listener to close")
            still_draining = process.poll() is None and not all(answer.done() for answer in answers)
            codes = [answer.result() for answer in answers]
        exit_code = process.wait(timeout=shutdown_timeout_s + 10)
        took_s = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
    output = process.output()
    assert codes == [200] * SEARCHES, output[-3000:]
    assert still_draining, "new connections must be refused while accepted searches still finish"
    assert exit_code == 0 and took_s < shutdown_timeout_s, (exit_code, took_s, output[-3000:])
    assert connection_refused(_port(base))
    assert "Traceback" not in output


def test_shutdown_timeout_bounds_a_request_that_never_finishes(index: Path, env: dict[str, str]) -> None:
    """A client that stops sending its upload must not keep the process alive past shutdown_timeout_s."""
    shutdown_timeout_s = 2
    process, base = start_server(index, {**env, "FASHION_SHUTDOWN_TIMEOUT_S": str(shutdown_timeout_s)})
    try:
        with socket.create_connection(("127.0.0.1", _port(base)), timeout=30) as stalled:
            stalled.sendall(
                b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\n"
            )
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # the server has read it
            process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            exit_code = process.wait(timeout=shutdown_timeout_s + 15)
            took_s = time.monotonic() - stopped
            cut = stalled.recv(65536)
    finally:
        if process.poll() is None:
            process.kill()
    output = process.output()
    assert exit_code == 0, output[-3000:]
    assert shutdown_timeout_s - 0.5 < took_s < shutdown_timeout_s + 10, took_s  # waited, then gave up
    assert not cut.startswith(b"HTTP/1.1 200"), cut[:200]


def test_kill_9_during_build_leaves_the_published_index_serving(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "index"
    small = write_catalog(tmp_path / "small", 24)
    first = cli("index", "build", "--catalog", str(small), "--out", str(out), env=env)
    assert first.returncode == 0, first.stderr
    published = out.resolve()
    build_big = [
        "index",
        "build",
        "--catalog",
        str(write_slow_catalog(tmp_path / "big", 400)),
        "--out",
        str(out),
    ]
    builder = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", *build_big, "--no-progress", "--batch-size", "8"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: any(builds_root(out).glob(f"*{PARTIAL_SUFFIX}")) or builder.poll() is not None,
            120,
            "the build to start writing",
        )
        builder.send_signal(signal.SIGKILL)
        builder.wait(timeout=10)
    finally:
        if builder.poll() is None:
            builder.kill()
    leftovers = list(builds_root(out).glob(f"*{PARTIAL_SUFFIX}"))
    assert builder.returncode == -signal.SIGKILL and leftovers, "the build was not killed half-way"

    assert out.resolve() == published
    info = cli("index", "info", str(out), env=env)
    assert info.returncode == 0 and json.loads(info.stdout)["count"] == 24, info.stderr
    with running_server(out, env) as base:
        files = {"image": ("look.jpg", jpeg_bytes(garment_image(7)), "image/jpeg")}
        found = httpx.post(f"{base}/v1/search", files=files, timeout=30)
        assert found.status_code == 200, found.text
        assert found.json()["garments"][0]["matches"][0]["item_id"] == "item-0007"

    rebuilt = cli(*build_big, "--no-progress", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "400 items" in rebuilt.stdout
    assert not any(builds_root(out).glob(f"*{PARTIAL_SUFFIX}")), "the killed build's leftovers remain"
    assert json.loads(cli("index", "info", str(out), env=env).stdout)["count"] == 400


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble_vectors(path: Path) -> None:
    """Keep FAISS's header intact and damage the numbers: FAISS itself reads this without complaint."""
    data = bytearray(path.read_bytes())
    data[-64:] = bytes(byte ^ 0xFF for byte in data[-64:])
    path.write_bytes(bytes(data))


def _garble(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


CORRUPTIONS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "truncated vectors": (VECTORS_NAME, _truncate, "is not a readable FAISS index"),
    "damaged vectors": (VECTORS_NAME, _garble_vectors, "is damaged or was changed after the build"),
    "deleted items": (METADATA_NAME, Path.unlink, "is missing"),
    "garbled items": (METADATA_NAME, _garble, "is not a readable item database"),
    "garbled manifest": (MANIFEST_NAME, _garble, "is not readable JSON"),
}


def _assert_one_line_failure(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(fragment in last for fragment in fragments), last


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_serve_refuses_a_corrupt_index_in_one_line(
    case: str, index: Path, env: dict[str, str], tmp_path: Path
) -> None:
    name, damage, reason = CORRUPTIONS[case]
    copy = tmp_path / "index"
    shutil.copytree(index.resolve(), copy)
    damage(copy / name)
    served = cli("serve", "--index", str(copy), "--port", str(free_port()), env=env, timeout=120)
    _assert_one_line_failure(served, str(copy / name), reason)


def _without_checkpoint(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    model_dir = Path(env["FASHION_EMBEDDER__MODEL_NAME"].removeprefix("local-dir:"))
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    return {"FASHION_EMBEDDER__MODEL_NAME": f"local-dir:{copy}"}


MISSING_WEIGHTS: dict[str, tuple[Callable[[dict[str, str], Path], dict[str, str]], str]] = {
    "local-dir gone": (
        lambda env, tmp: {"FASHION_EMBEDDER__MODEL_NAME": f"local-dir:{tmp / 'gone'}"},
        "gone/open_clip_config.json does not exist",
    ),
    "local-dir without checkpoint": (_without_checkpoint, "has no checkpoint file"),
    "fashion-net weights": (
        lambda env, tmp: {
            "FASHION_EMBEDDER__KIND": "fashion-net",
            "FASHION_EMBEDDER__PRETRAINED": f"{tmp}/w.st",
        },
        "w.st do not exist",
    ),
}


@pytest.mark.parametrize("case", list(MISSING_WEIGHTS))
@pytest.mark.parametrize("command", ["serve", "index build"])
def test_missing_weights_fail_in_one_line_naming_the_file(
    case: str, command: str, index: Path, env: dict[str, str], tmp_path: Path
) -> None:
    overrides, named = MISSING_WEIGHTS[case]
    broken = {**env, **overrides(env, tmp_path)}
    if command == "serve":
        result = cli("serve", "--index", str(index), "--port", str(free_port()), env=broken, timeout=120)
    else:
        feed = write_catalog(tmp_path / "feed", 4)
        result = cli("index", "build", "--catalog", str(feed), "--out", str(tmp_path / "new"), env=broken)
        assert not (tmp_path / "new").exists()
    _assert_one_line_failure(result, named)


def test_serve_names_missing_parser_weights(index: Path, env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "parser.safetensors"
    broken = {**env, "FASHION_DETECTOR": "garment-parser", "FASHION_DETECTOR_WEIGHTS": str(missing)}
    served = cli("serve", "--index", str(index), "--port", str(free_port()), env=broken, timeout=120)
    _assert_one_line_failure(served, f"garment-parser weights not found at {missing}")
