"""End to end: the `fashion-search` CLI builds an index and serves it with a real uvicorn process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.serving import cli, running_server, tiny_model_env
from tests.helpers import garment_image, jpeg_bytes, write_catalog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny model saved as an open_clip local-dir, so a separate process can load it."""
    return tiny_model_env(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    feed = write_catalog(root, 24, ['{"id": "bad", "title": "no image"}'])
    result = cli("index", "build", "--catalog", str(feed), "--out", str(root / "index"), env=env)
    assert result.returncode == 0, result.stderr
    assert "built" in result.stdout and "24 items, 1 skipped" in result.stdout
    assert "skipped line 25 (id 'bad')" in result.stderr
    return root / "index"


@pytest.fixture(scope="module")
def server(index: Path, env: dict[str, str]) -> Iterator[str]:
    with running_server(index, env) as base:
        yield base


def test_search_over_http(server: str) -> None:
    files = {"image": ("look.jpg", jpeg_bytes(garment_image(9), quality=95), "image/jpeg")}
    response = httpx.post(f"{server}/v1/search", files=files, data={"top_k": "4"}, timeout=30)
    assert response.status_code == 200, response.text
    matches = response.json()["garments"][0]["matches"]
    assert len(matches) == 4 and matches[0]["item_id"] == "item-0009"


def test_errors_over_http(server: str) -> None:
    files = {"image": ("x.txt", b"not an image", "application/octet-stream")}
    response = httpx.post(f"{server}/v1/search", files=files, timeout=30)
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    truncated = {"image": ("x.jpg", jpeg_bytes(garment_image(1))[:200], "image/jpeg")}
    response = httpx.post(f"{server}/v1/search", files=truncated, timeout=30)
    assert response.status_code == 422 and response.json()["code"] == "undecodable_image"
    assert httpx.get(f"{server}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{server}/readyz", timeout=5).json()
    assert ready["model"].startswith("open_clip:local-dir:") and "/tmp" not in ready["model"]
    assert httpx.get(f"{server}/docs", timeout=5).status_code == 200


def test_cli_info_and_search(index: Path, env: dict[str, str], tmp_path: Path) -> None:
    info = cli("index", "info", str(index), env=env)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["count"] == 24
    garment_image(2).save(tmp_path / "query.png")
    found = cli("search", str(tmp_path / "query.png"), "--index", str(index), "--top-k", "2", env=env)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["garments"][0]["matches"][0]["item_id"] == "item-0002"
    refined = cli(
        "search", str(tmp_path / "query.png"), "--index", str(index), "--top-k", "3",
        "--text", "in red", "--filters", json.dumps({"in_stock": True, "attributes": {"pattern": "striped"}}),
        env=env,
    )  # fmt: skip
    assert refined.returncode == 0, refined.stderr
    garment = json.loads(refined.stdout)["garments"][0]
    assert garment["refinement"]["wanted"] == {"colour": ["red"]}
    assert [m["attributes"]["colour"]["value"] for m in garment["matches"]][:2] == ["red", "red"]
    assert all(m["in_stock"] for m in garment["matches"])
    bad = cli(
        "search", str(tmp_path / "query.png"), "--index", str(index), "--filters", '{"colour": 1}', env=env
    )
    assert bad.returncode != 0 and "filters" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_failures_are_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    missing = cli(
        "index", "build", "--catalog", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "i"), env=env
    )
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1].startswith(
        "error: catalogue feed"
    )
    bad_env = {**env, "FASHION_MAX_TOP_K": "-5"}
    wrong = cli("index", "info", str(tmp_path), env=bad_env)
    assert wrong.returncode != 0 and "error:" in wrong.stderr
    not_built = cli("index", "info", str(tmp_path), env=env)
    assert not_built.returncode == 1 and "is not a built index" in not_built.stderr
