"""Real-process helpers for end-to-end tests: a tiny open_clip model on disk, the CLI, a uvicorn server."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import open_clip
import pytest
import torch

from models.openclip_loader import save_checkpoint
from tests.helpers import TINY_CONFIG, TINY_MODEL, garment_image, write_catalog

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tiny_model_env(model_dir: Path) -> dict[str, str]:
    """Save a seeded tiny model as an open_clip local-dir and return an environment that serves it."""
    torch.manual_seed(0)
    save_checkpoint(open_clip.create_model(TINY_MODEL), model_dir / "open_clip_model.safetensors", TINY_MODEL)
    (model_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG}))
    return {
        **os.environ,
        "FASHION_EMBEDDER__KIND": "open_clip",
        "FASHION_DETECTOR": "full-frame",
        "FASHION_EMBEDDER__MODEL_NAME": f"local-dir:{model_dir}",
        "FASHION_EMBEDDER__PRETRAINED": "",
        "HF_HUB_OFFLINE": "1",
        "FASHION_ZERO_SHOT": "false",  # a random text tower would only add confident noise
    }


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def built_index(root: Path, n_items: int, env: dict[str, str]) -> Path:
    """A generated catalogue of `n_items` under `root`, indexed by `fashion-search index build`."""
    feed = write_catalog(root, n_items)
    built = cli("index", "build", "--catalog", str(feed), "--out", str(root / "index"), env=env)
    assert built.returncode == 0, built.stderr
    return root / "index"


class ServerProcess(subprocess.Popen[str]):
    """`fashion-search serve` with its output going to a file, never to a pipe: a pipe nobody reads fills
    after about 64 KiB of access log and then blocks the server mid-request."""

    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_server(
    index: Path, env: dict[str, str], port: int | None = None, log_path: Path | None = None
) -> tuple[ServerProcess, str]:
    """Start `fashion-search serve` and wait (at most 90 s) until /readyz answers 200."""
    port = port or free_port()
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="fashion-serve-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    with log_path.open("a", encoding="utf-8") as sink:
        process = ServerProcess(
            [sys.executable, "-m", "scripts.cli", "serve", "--index", str(index), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    process.log_path = log_path
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {process.output()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("server did not become ready within 90 s")
        time.sleep(0.2)


@contextlib.contextmanager
def running_server(index: Path, env: dict[str, str], log_path: Path | None = None) -> Iterator[str]:
    with server_process(index, env, log_path) as (_, base):
        yield base


@contextlib.contextmanager
def server_process(
    index: Path, env: dict[str, str], log_path: Path | None = None
) -> Iterator[tuple[ServerProcess, str]]:
    """A running server and its base URL; stopped (SIGTERM, then SIGKILL) on exit."""
    process, base = start_server(index, env, log_path=log_path)
    try:
        yield process, base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if log_path is None:
            process.log_path.unlink(missing_ok=True)


def metric_value(base: str, name: str) -> float:
    """One unlabelled sample from the server's Prometheus /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def connection_refused(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_until(
    condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.02
) -> None:
    """Poll `condition` until it is true; fail the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def write_slow_catalog(directory: Path, n_items: int) -> Path:
    """n_items rows over a few large photos, without attributes (so colour is predicted per item): a build
    that takes seconds even with the tiny model."""
    (directory / "images").mkdir(parents=True)
    photos = []
    for seed in range(8):
        photos.append(f"images/photo-{seed}.jpg")
        garment_image(seed, size=512).save(directory / photos[-1], quality=90)
    rows = [
        json.dumps(
            {
                "id": f"big-{index:04d}",
                "image": photos[index % len(photos)],
                "title": f"Garment {index}",
                "category": "top",
                "url": f"https://shop.example/p/big-{index}",
            }
        )
        for index in range(n_items)
    ]
    feed = directory / "catalog.jsonl"
    feed.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return feed
