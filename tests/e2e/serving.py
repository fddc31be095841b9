"""Real-process helpers for end-to-end tests: a tiny open_clip model on disk, the CLI, a uvicorn server."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import open_clip
import pytest
import torch

from models.openclip_loader import save_checkpoint
from tests.helpers import TINY_CONFIG, TINY_MODEL

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


def start_server(
    index: Path, env: dict[str, str], port: int | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start `fashion-search serve` and wait (at most 90 s) until /readyz answers 200."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "serve", "--index", str(index), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"server exited with {process.returncode}: {output}")
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
def running_server(index: Path, env: dict[str, str]) -> Iterator[str]:
    process, base = start_server(index, env)
    try:
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
