"""benchmarks/sync.py: a smoke run on a small generated catalogue with the tiny test model (the lead runs the
10,000-item measurement)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.serving import tiny_model_env
from tests.helpers import REPO_ROOT


@pytest.mark.slow
def test_smoke_run_with_the_tiny_model(tmp_path: Path) -> None:
    out = tmp_path / "sync.json"
    (tmp_path / "model").mkdir()
    subprocess.run(
        [sys.executable, "-m", "benchmarks.sync", "--items", "40", "--passes", "2", "--changed-share", "0.1",
         "--out", str(out)],
        cwd=REPO_ROOT, env=tiny_model_env(tmp_path / "model"), check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["benchmark"] == "sync" and report["catalogue"]["items"] == 40
    assert report["catalogue"]["changed_rows_per_pass"] == 4 and len(report["passes"]) == 2
    for run in report["passes"]:
        assert run["plan"]["changed_fields"] == 2 and run["plan"]["changed_images"] == 2
        assert run["plan"]["unchanged"] == 36 and run["count"] == 40
        assert run["embedded"] == run["changed_images"] == 2
    assert report["embedded_equals_changed_images"]
    assert report["sync_s_median"] > 0 and report["rebuild_s_median"] > 0 and report["rebuild_over_sync"]
    assert set(report["sync_stages_s_median"]) >= {"download", "digest", "plan", "apply", "total"}
    assert report["machine"]["cpu"] and "torch" in report["machine"]["versions"]
