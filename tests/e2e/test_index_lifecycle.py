"""Index lifecycle on real processes: kill -9 during `index add`, CLI and HTTP changes seen by a running
server without a restart, a damaged new build refused while the old one serves, and `index verify`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from indexer.manifest import RAW_VECTORS_NAME, VECTORS_NAME
from indexer.publish import PARTIAL_SUFFIX, builds_root
from tests.e2e.serving import ROOT, cli, running_server, tiny_model_env, wait_until, write_slow_catalog
from tests.helpers import garment_image, jpeg_bytes, write_catalog

pytestmark = pytest.mark.slow
ADMIN_KEY = "admin-key-0123456789abcdef"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**tiny_model_env(tmp_path_factory.mktemp("model")), "FASHION_RATE_LIMIT_PER_S": "0"}


def built(tmp_path: Path, env: dict[str, str], n_items: int = 24, *extra: str) -> Path:
    out = tmp_path / "index"
    result = cli("index", "build", "--catalog", str(write_catalog(tmp_path / "shop", n_items)), "--out",
                 str(out), "--no-progress", *extra, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def count(out: Path, env: dict[str, str]) -> int:
    info = cli("index", "info", str(out), env=env)
    assert info.returncode == 0, info.stderr
    return int(json.loads(info.stdout)["count"])


def test_kill_9_during_index_add_keeps_every_acknowledged_change(tmp_path: Path, env: dict[str, str]) -> None:
    out = built(tmp_path, env)
    deleted = cli("index", "delete", "item-0001", "--index", str(out), env=env)
    assert deleted.returncode == 0 and "1 deleted" in deleted.stdout, deleted.stderr  # acknowledged
    published = out.resolve()
    adder = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "index", "add", str(write_slow_catalog(tmp_path / "big", 400)),
         "--index", str(out), "--batch-size", "8"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        seen = b""
        assert adder.stderr is not None
        while b"/400" not in seen and adder.poll() is None:  # tqdm has started counting: mid-embedding
            seen += adder.stderr.read1(4096)
        adder.send_signal(signal.SIGKILL)
        adder.wait(timeout=10)
    finally:
        if adder.poll() is None:
            adder.kill()
    assert adder.returncode == -signal.SIGKILL, "the update ended before it could be killed"
    assert out.resolve() == published and count(out, env) == 23
    added = cli("index", "add", str(write_catalog(tmp_path / "more", 3)),
                "--index", str(out), env=env)  # fmt: skip
    # write_catalog reuses ids item-0000..2: 0 and 2 are known (skipped), 1 was deleted (added again)
    assert added.returncode == 0 and "1 added" in added.stdout and "2 skipped" in added.stdout, added.stderr
    assert count(out, env) == 24 and not list(builds_root(out).glob(f"*{PARTIAL_SUFFIX}"))


def test_a_running_server_follows_cli_and_http_changes(tmp_path: Path, env: dict[str, str]) -> None:
    out = built(tmp_path, env)
    root = tmp_path / "shop"
    garment_image(500).save(root / "images" / "new-500.jpg", quality=95)
    serving = {**env, "FASHION_RELOAD_POLL_S": "0.2", "FASHION_ADMIN_KEY": ADMIN_KEY,
               "FASHION_IMAGE_ROOT": str(root)}  # fmt: skip
    with running_server(out, serving, tmp_path / "server.log") as base:
        assert cli("index", "delete", "item-0003", "--index", str(out), env=env).returncode == 0
        wait_until(lambda: httpx.get(f"{base}/readyz").json()["items"] == 23, 15, "the CLI delete to show")
        assert httpx.get(f"{base}/v1/items/item-0003").status_code == 404

        row = {"id": "new-500", "image": "images/new-500.jpg", "title": "New", "category": "top"}
        admin = {"X-Admin-Key": ADMIN_KEY}
        added = httpx.post(f"{base}/v1/admin/items", json={"items": [row]}, headers=admin, timeout=60)
        assert added.status_code == 200 and added.json()["count"] == 24, added.text
        photo = {"image": ("q.jpg", jpeg_bytes(garment_image(500), quality=95), "image/jpeg")}
        found = httpx.post(f"{base}/v1/search", files=photo, data={"top_k": "1"}, timeout=30).json()
        assert found["garments"][0]["matches"][0]["item_id"] == "new-500"

        # A damaged build put behind the link by hand (a bad copy) is refused; the old one keeps serving.
        damaged = builds_root(out) / "99999999T000000-damaged"
        shutil.copytree(out.resolve(), damaged)
        (damaged / VECTORS_NAME).write_bytes(b"\x00" * 128)
        link = out.with_name(".index.swap")
        os.symlink(damaged, link)
        os.replace(link, out)
        time.sleep(1.5)
        assert httpx.get(f"{base}/readyz").json()["items"] == 24
        assert httpx.get(f"{base}/v1/items/item-0004").status_code == 200
    assert "refused" in (tmp_path / "server.log").read_text()


def test_index_verify_reports_recall_and_refuses_damage(tmp_path: Path, env: dict[str, str]) -> None:
    out = built(tmp_path, env, 60, "--index-factory", "HNSW32,Flat")
    verified = cli("index", "verify", "--index", str(out), "--sample", "30", env=env)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["index_type"] == "HNSW32,Flat" and report["queries"] == 30 and report["count"] == 60
    assert report["recall_at_10"] >= 0.9 and report["checksums"] == "ok"
    raw = out.resolve() / RAW_VECTORS_NAME
    raw.write_bytes(raw.read_bytes()[:-8] + b"\x00" * 8)
    damaged = cli("index", "verify", "--index", str(out), env=env)
    assert damaged.returncode == 1 and "vectors.npy is damaged" in damaged.stderr
    assert "Traceback" not in damaged.stderr
