from __future__ import annotations

from pathlib import Path

import pytest

from indexer.build import BuildOptions, build_index
from models.attributes.extractor import create_extractor
from models.embedder import Embedder

BACKENDS = ("faiss", "milvus")


@pytest.fixture(scope="session")
def milvus_index(
    tmp_path_factory: pytest.TempPathFactory, catalog_feed: Path, tiny_embedder: Embedder
) -> Path:
    """The same catalogue as `built_index`, its vectors in Milvus Lite inside the build (milvus.db)."""
    pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (the scale extra)")
    out = tmp_path_factory.mktemp("milvus-index") / "index"
    build_index(
        catalog_feed,
        out,
        tiny_embedder,
        BuildOptions(progress=False, batch_size=16, vector_store="milvus"),
        create_extractor(tiny_embedder),
    )
    return out


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def backend_index(request: pytest.FixtureRequest, backend: str) -> Path:
    """The small test index with its vectors in `backend`."""
    return Path(request.getfixturevalue("built_index" if backend == "faiss" else "milvus_index"))
