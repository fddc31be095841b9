"""Errors that must be clear, on real processes (issue 16, items 8-12): hostile JSON options, echoes of huge
input, a read-only index folder, a NUL byte in an admin image path, a published build without its item
database, a failed link swap that must not take a rollback slot, and paths with spaces in messages. Each
answers a 4xx/409 (HTTP) or one `error:` line (CLI), and nothing changes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.manifest import METADATA_NAME
from indexer.publish import PARTIAL_SUFFIX, builds_root
from tests.e2e.serving import (
    cli,
    running_server,
    start_server,
    tiny_model_env,
    wait_until,
    write_slow_catalog,
)
from tests.helpers import garment_image, jpeg_bytes, write_catalog

pytestmark = pytest.mark.slow
ADMIN_KEY = "admin-key-0123456789abcdef"
ADMIN = {"X-Admin-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**tiny_model_env(tmp_path_factory.mktemp("model")), "FASHION_RATE_LIMIT_PER_S": "0"}


def build(out: Path, shop: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    feed = shop / "catalog.jsonl" if (shop / "catalog.jsonl").is_file() else write_catalog(shop, 8)
    return cli("index", "build", "--catalog", str(feed), "--out", str(out), "--no-progress", *extra, env=env)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI failed with one `error:` line (logs may precede it) and no traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-2000:]
    return last


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` cannot be written, even by root (chattr +i), for the duration."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without a working chattr +i: no way to make a folder read-only here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """A catalogue and its index under a folder whose name has spaces and brackets."""
    root = tmp_path_factory.mktemp("data") / "my data (prod)"
    result = build(root / "index", root / "shop", env)
    assert result.returncode == 0, result.stderr
    garment_image(900).save(root / "shop" / "images" / "new-900.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def server(shop: Path, env: dict[str, str]) -> Iterator[str]:
    serving = {**env, "FASHION_ADMIN_KEY": ADMIN_KEY, "FASHION_IMAGE_ROOT": str(shop / "shop"),
               "FASHION_RELOAD_POLL_S": "0"}  # fmt: skip
    with running_server(shop / "index", serving) as base:
        yield base


def search(base: str, **fields: str) -> httpx.Response:
    files = {"image": ("q.jpg", jpeg_bytes(garment_image(3)), "image/jpeg")}
    return httpx.post(f"{base}/v1/search", files=files, data=fields, timeout=30)


def new_item(image: str) -> dict[str, object]:
    return {"items": [{"id": "new-900", "image": image, "title": "New", "category": "top"}]}


def test_hostile_json_options_are_422(server: str) -> None:
    nested = '{"colour": ' * 10_000 + "1" + "}" * 10_000
    for field, raw in (
        ("weights", nested),
        ("weights", '{"colour": 1' + "0" * 5_000 + "}"),
        ("weights", '{"colour": NaN}'),
        ("filters", '{"attributes": ' * 5_000 + "{}" + "}" * 5_000),
        ("filters", '{"price_max": 1' + "0" * 5_000 + "}"),
        ("profile", '{"price_min": 50, "price_max": 10}'),
        ("profile", '{"brands": ' + "[" * 3_000 + "]" * 3_000 + "}"),
    ):
        answer = search(server, **{field: raw})
        assert answer.status_code == 422, (field, raw[:40], answer.status_code, answer.text[:300])
        assert answer.json()["code"] == "invalid_request" and field in answer.json()["message"]
    assert search(server, weights='{"colour": 3}', profile='{"price_min": 5, "price_max": 50}').is_success


def test_unknown_input_is_not_echoed_in_full(server: str) -> None:
    huge = "x" * 900_000
    for fields in (
        {"category": huge},
        {"filters": json.dumps({"attributes": {"colour": huge[:10_000]}})},
        {"weights": json.dumps({huge[:10_000]: 1})},
    ):
        answer = search(server, **fields)
        assert answer.status_code == 422, answer.text[:300]
        assert len(answer.content) < 2_000, len(answer.content)
    missing = httpx.get(f"{server}/v1/items/{'y' * 5_000}", timeout=10)
    assert missing.status_code == 404 and len(missing.content) < 2_000


def test_a_nul_byte_in_an_admin_image_path_is_422(server: str, shop: Path) -> None:
    before = (shop / "index").resolve()
    answer = httpx.post(f"{server}/v1/admin/items", json=new_item("images/new\x00-900.jpg"), headers=ADMIN)
    assert answer.status_code == 422, answer.text[:300]
    assert "control character" in answer.json()["message"]
    assert (shop / "index").resolve() == before


def test_a_read_only_index_folder_is_409_over_http_and_one_line_in_the_cli(
    server: str, shop: Path, env: dict[str, str]
) -> None:
    out = shop / "index"
    before = out.resolve()
    with read_only(builds_root(out)):
        answer = httpx.post(f"{server}/v1/admin/items", json=new_item("images/new-900.jpg"), headers=ADMIN)
        assert answer.status_code == 409, answer.text[:300]
        body = answer.json()
        assert body["code"] == "update_refused" and "unchanged" in body["message"]
        assert "my data" not in body["message"]  # the path is redacted, spaces and brackets included
        feed = shop / "more.jsonl"
        row = new_item(str(shop / "shop" / "images" / "new-900.jpg"))["items"]
        feed.write_text(json.dumps(row[0]) + "\n")
        line = one_error_line(cli("index", "add", str(feed), "--index", str(out), env=env))
        assert "cannot write under" in line
    assert out.resolve() == before
    assert httpx.get(f"{server}/v1/items/new-900", timeout=10).status_code == 404


def test_a_failed_link_swap_does_not_take_a_rollback_slot(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "site" / "index"
    for _ in range(2):
        assert build(out, tmp_path / "shop", env, "--keep", "2").returncode == 0
    earlier = sorted(p.name for p in builds_root(out).iterdir() if p.is_dir())
    assert len(earlier) == 2
    with read_only(out.parent):  # the build is written under index.builds/, the new link cannot be made
        one_error_line(build(out, tmp_path / "shop", env, "--keep", "2"))
    assert out.resolve().name == earlier[-1]  # still serving the last good build
    assert sorted(p.name for p in builds_root(out).iterdir() if p.is_dir()) == earlier  # nothing left over
    assert build(out, tmp_path / "shop", env, "--keep", "2").returncode == 0
    kept = sorted(p.name for p in builds_root(out).iterdir() if p.is_dir())
    assert kept[0] == earlier[-1] and len(kept) == 2  # the rollback target survived the prune


def test_an_admin_change_on_a_build_without_its_item_database_is_409(
    tmp_path: Path, env: dict[str, str]
) -> None:
    root = tmp_path / "my data (prod)"
    assert build(root / "index", root / "shop", env).returncode == 0
    garment_image(900).save(root / "shop" / "images" / "new-900.jpg", quality=95)
    serving = {**env, "FASHION_ADMIN_KEY": ADMIN_KEY, "FASHION_IMAGE_ROOT": str(root / "shop"),
               "FASHION_RELOAD_POLL_S": "0"}  # fmt: skip
    with running_server(root / "index", serving) as base:
        (root / "index" / METADATA_NAME).unlink()  # the server keeps its open copy and goes on serving
        before = (root / "index").resolve()
        answer = httpx.post(f"{base}/v1/admin/items", json=new_item("images/new-900.jpg"), headers=ADMIN)
        assert answer.status_code == 409, answer.text[:300]
        assert answer.json()["code"] == "index_rejected" and "items.sqlite" in answer.json()["message"]
        assert "my data" not in answer.json()["message"]
        reload = httpx.post(f"{base}/v1/admin/reload", headers=ADMIN, timeout=30)
        assert reload.status_code == 409 and reload.json()["code"] == "index_rejected"
        assert search(base).is_success  # the open index keeps serving
    assert (root / "index").resolve() == before
    assert not list(builds_root(root / "index").glob(f"*{PARTIAL_SUFFIX}"))


def test_a_killed_admin_change_leaves_nothing_behind(tmp_path: Path, env: dict[str, str]) -> None:
    """kill -9 while an admin change embeds its rows: no scratch folder in the server's temp dir, and the next
    change (after a restart) publishes cleanly with nothing partial left."""
    out = tmp_path / "index"
    assert build(out, tmp_path / "shop", env).returncode == 0
    slow = write_slow_catalog(tmp_path / "big", 200)
    rows = [json.loads(line) for line in slow.read_text().splitlines()]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    serving = {**env, "FASHION_ADMIN_KEY": ADMIN_KEY, "FASHION_IMAGE_ROOT": str(tmp_path / "big"),
               "FASHION_RELOAD_POLL_S": "0", "TMPDIR": str(scratch)}  # fmt: skip
    process, base = start_server(out, serving)
    try:

        def post_change() -> None:
            with contextlib.suppress(httpx.TransportError):  # the server is killed mid-request
                httpx.post(f"{base}/v1/admin/items", json={"items": rows}, headers=ADMIN, timeout=60)

        change = threading.Thread(target=post_change, daemon=True)
        change.start()
        wait_until(lambda: lock_held(out), 30, "the admin change to take the index's build lock")
        process.send_signal(signal.SIGKILL)  # mid-change: it holds the lock until it has published
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        process.log_path.unlink(missing_ok=True)
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("fashion")]
    later = [{**row, "id": f"after-{n}"} for n, row in enumerate(rows[:2])]
    with running_server(out, serving) as restarted:
        answer = httpx.post(f"{restarted}/v1/admin/items", json={"items": later}, headers=ADMIN, timeout=60)
        assert answer.status_code == 200 and answer.json()["added"] == 2, answer.text[:300]
    assert not list(builds_root(out).glob(f"*{PARTIAL_SUFFIX}"))


def lock_held(out: Path) -> bool:
    """Whether a build or change of `out` holds its lock (indexer.publish.build_lock) right now."""
    lock = builds_root(out) / ".lock"
    if not lock.is_file():
        return False
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
