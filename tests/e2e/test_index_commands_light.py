"""Issue 19 over the real CLI: a broken feed never empties a live index (the old build keeps serving, exit
non-zero with one line), --force publishes it, --json summaries, and info / delete / verify load no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.serving import cli, tiny_model_env
from tests.helpers import write_catalog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return tiny_model_env(tmp_path_factory.mktemp("model"))


def info(index: Path, env: dict[str, str]) -> dict[str, object]:
    shown = cli("index", "info", str(index), env=env)
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def mostly_bad_feed(directory: Path) -> Path:
    """20 rows: 5 valid, 15 without an image or a category."""
    feed = write_catalog(directory, 5)
    bad = [json.dumps({"id": f"bad-{index}", "title": "no image"}) for index in range(15)]
    feed.write_text(feed.read_text(encoding="utf-8") + "\n".join(bad) + "\n", encoding="utf-8")
    return feed


def test_a_broken_feed_never_empties_a_live_index(tmp_path: Path, env: dict[str, str]) -> None:
    index = tmp_path / "index"
    first = cli("index", "build", "--catalog", str(write_catalog(tmp_path / "live", 20)), "--out", str(index),
                "--no-progress", "--json", env=env)  # fmt: skip
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["count"] == summary["vectors"] == 20 and summary["skipped"] == []
    assert summary["unknown_categories"] == {} and summary["timings_s"]["total"] > 0

    broken = mostly_bad_feed(tmp_path / "broken")
    refused = cli("index", "build", "--catalog", str(broken), "--out", str(index), "--no-progress", env=env)
    assert refused.returncode == 1
    error = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "15 of 20 rows" in error[0] and "--max-bad-ratio 0.05" in error[0]
    assert "line 6 (id 'bad-0'): missing required field(s)" in error[0]
    assert info(index, env)["count"] == 20

    short_feed = str(write_catalog(tmp_path / "short", 14))
    short = cli("index", "build", "--catalog", short_feed, "--out", str(index), "--no-progress", env=env)
    assert short.returncode == 1 and "6 (30%) fewer than the 20 published" in short.stderr
    assert info(index, env)["count"] == 20

    forced = cli("index", "build", "--catalog", str(broken), "--out", str(index), "--no-progress", "--force",
                 "--json", env=env)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    summary = json.loads(forced.stdout)
    assert summary["count"] == 5 and len(summary["skipped"]) == 15
    assert summary["skipped"][0] == {"line": 6, "id": "bad-0", "reason": summary["skipped"][0]["reason"]}
    assert info(index, env)["count"] == 5


def test_info_delete_and_verify_load_no_model(tmp_path: Path, env: dict[str, str]) -> None:
    index = tmp_path / "index"
    built = cli("index", "build", "--catalog", str(write_catalog(tmp_path / "shop", 8)), "--out", str(index),
                "--no-progress", env=env)  # fmt: skip
    assert built.returncode == 0, built.stderr
    # The weights are gone: any command that loaded the model would fail.
    no_model = {**env, "FASHION_EMBEDDER__MODEL_NAME": f"local-dir:{tmp_path / 'no-such-weights'}"}
    assert info(index, no_model)["count"] == 8
    deleted = cli("index", "delete", "item-0001", "--index", str(index), "--json", env=no_model)
    assert deleted.returncode == 0, deleted.stderr
    summary = json.loads(deleted.stdout)
    assert (summary["command"], summary["deleted"], summary["count"]) == ("delete", 1, 7)
    verified = cli("index", "verify", "--index", str(index), "--sample", "5", env=no_model)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["count"] == 7
    one_line = cli("index", "info", str(index), "--no-json", env=no_model)
    assert one_line.returncode == 0 and "7 items" in one_line.stdout

    # The same environment does break a command that needs the model: the check above means something.
    added = cli("index", "add", str(write_catalog(tmp_path / "more", 10)), "--index", str(index),
                "--no-progress", env=no_model)  # fmt: skip
    assert added.returncode == 1 and "no-such-weights" in added.stderr
