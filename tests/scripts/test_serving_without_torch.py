"""A serving install without PyTorch (`pip install .`, the Docker image): the shipped default models build an
index and answer a search through the app with `torch`, `torchvision` and `open_clip` unimportable, and the
PyTorch-only choices say which extra to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.serving_install import BLOCKED, write_torch_blocker
from tests.helpers import write_catalog

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE = """
import json, sys
from pathlib import Path

from fastapi.testclient import TestClient

from models.embedder import create_embedder
from models.errors import ConfigError
from models.spec import EmbedderSpec
from search.settings import Settings
from service.app import create_app

index, query = Path(sys.argv[1]), Path(sys.argv[2])
with TestClient(create_app(Settings(index_dir=index))) as client:
    ready = client.get("/readyz").json()
    response = client.post("/v1/search", files={"image": (query.name, query.read_bytes(), "image/jpeg")})
errors = {}
specs = {"open_clip": EmbedderSpec(kind="open_clip"), "torch": EmbedderSpec(runtime="torch")}
for name, spec in specs.items():
    try:
        create_embedder(spec)
    except ConfigError as exc:
        errors[name] = str(exc)
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in sys.argv[3:])
print(json.dumps({"status": response.status_code, "body": response.json(), "model": ready.get("model"),
                  "errors": errors, "loaded": loaded}))
"""


def blocked_env(site_dir: Path) -> dict[str, str]:
    """This environment less FASHION_* settings, with the blocking sitecustomize and the repo on the path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FASHION_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site_dir), str(REPO_ROOT)])
    return env


def test_the_shipped_models_serve_without_pytorch(tmp_path: Path) -> None:
    env = blocked_env(write_torch_blocker(tmp_path / "site"))
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "blocked: a serving install" in probe.stderr  # the block works

    feed = write_catalog(tmp_path / "catalog", n_items=8)
    index = tmp_path / "index"
    build = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "index", "build", "--catalog", str(feed), "--out", str(index)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]

    query = tmp_path / "catalog" / "images" / "item-0003.jpg"
    serve = subprocess.run(
        [sys.executable, "-c", SERVE, str(index), str(query), *BLOCKED],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert serve.returncode == 0, serve.stderr[-3000:]
    result = json.loads(serve.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []  # 'torch' (and the others) never got into sys.modules
    assert result["status"] == 200, result["body"]
    assert result["model"].startswith("fashion-net:fashion-net-v3#")
    matches = [match["item_id"] for garment in result["body"]["garments"] for match in garment["matches"]]
    assert matches and set(matches) <= {f"item-{row:04d}" for row in range(8)}
    assert "pip install 'fashion-search[open_clip]'" in result["errors"]["open_clip"]
    assert "pip install 'fashion-search[train]'" in result["errors"]["torch"]
