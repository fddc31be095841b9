"""`fashion-search index sync` over a real index (issue 19): after one title changed, one image changed, one
row removed and one added, `--json` reports added 1, changed 2, removed 1, embedded 2; a dry run and a sync
that would remove half the catalogue publish nothing (the refusal is one `error:` line)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serving import cli, tiny_model_env
from tests.helpers import garment_image, write_catalog
from tests.indexer.test_sync import serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return tiny_model_env(tmp_path_factory.mktemp("model"))


def run_json(*args: str, env: dict[str, str]) -> dict[str, Any]:
    done = cli(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_sync_reports_and_applies_only_the_changes(tmp_path: Path, env: dict[str, str]) -> None:
    feed = write_catalog(tmp_path / "shop", 20)
    index = tmp_path / "index"
    built = run_json("index", "build", "--catalog", str(feed), "--out", str(index), "--no-progress", env=env)
    assert built["count"] == 20

    rows = [json.loads(line) for line in feed.read_text(encoding="utf-8").splitlines()]
    rows[1]["title"] = "Renamed"
    garment_image(900).save(tmp_path / "shop" / "images" / "item-0002.jpg")  # other bytes, same path
    del rows[3]
    rows.append({**rows[0], "id": "item-new", "title": "New arrival"})
    feed.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    planned = run_json("index", "sync", str(feed), "--index", str(index), "--dry-run", env=env)
    assert (planned["dry_run"], planned["published"], planned["build"]) == (True, False, built["build"])
    assert os.readlink(index).endswith(built["build"])

    synced = run_json("index", "sync", str(feed), "--index", str(index), "--no-progress", env=env)
    counts = {name: synced[name] for name in ("command", "added", "changed", "removed", "embedded")}
    assert counts == {"command": "sync", "added": 1, "changed": 2, "removed": 1, "embedded": 2}
    assert synced["unchanged"] == 17 and synced["skipped"] == [] and not synced["dry_run"]
    assert synced["plan"]["ids"] == {"added": ["item-new"], "changed_images": ["item-0002"],
                                     "changed_fields": ["item-0001"], "removed": ["item-0003"],
                                     "kept": []}  # fmt: skip
    assert synced["published"] and synced["build"] != built["build"] and synced["count"] == 20
    assert set(synced["timings_s"]) >= {"download", "digest", "plan", "apply", "total"}
    assert os.readlink(index).endswith(synced["build"])

    again = run_json("index", "sync", str(feed), "--index", str(index), "--no-progress", env=env)
    assert not again["published"] and again["build"] == synced["build"] and again["embedded"] == 0

    feed.write_text("".join(json.dumps(row) + "\n" for row in rows[:10]), encoding="utf-8")
    refused = cli("index", "sync", str(feed), "--index", str(index), "--no-progress", env=env)
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "10 of the 20 published items (50%)" in errors[0], refused.stderr
    assert "--max-removed-ratio 0.2" in errors[0] and os.readlink(index).endswith(synced["build"])


def test_build_and_sync_download_image_links_into_the_index_cache(
    tmp_path: Path, env: dict[str, str]
) -> None:
    feed = write_catalog(tmp_path / "cdn", 6)
    index = tmp_path / "index"
    with serving(tmp_path / "cdn" / "images") as base:
        rows = [json.loads(line) for line in feed.read_text(encoding="utf-8").splitlines()]
        rows = [{**row, "image": f"{base}/{Path(row['image']).name}"} for row in rows]
        feed.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        built = run_json(
            "index", "build", "--catalog", str(feed), "--out", str(index), "--no-progress", env=env
        )
        assert built["count"] == 6 and built["downloads"]["fetched"] == 6 and built["skipped"] == []
        assert len(list((tmp_path / "index.cache" / "images" / "blobs").rglob("*"))) >= 6
        synced = run_json("index", "sync", str(feed), "--index", str(index), "--no-progress", env=env)
    assert synced["unchanged"] == 6 and not synced["published"]
    assert synced["downloads"]["revalidated"] == 6 and synced["downloads"]["fetched"] == 0


def test_sync_help_names_the_download_cache(env: dict[str, str]) -> None:
    shown = cli("index", "sync", "--help", env={**env, "COLUMNS": "200"})
    assert shown.returncode == 0 and "INDEX.cache/images" in shown.stdout and "--dry-run" in shown.stdout
