from __future__ import annotations

from pathlib import Path

import pytest

from indexer.build import BuildOptions, build_index
from models.attributes.extractor import create_extractor
from models.embedder import Embedder, create_embedder
from models.spec import EmbedderSpec
from tests.helpers import TINY_MODEL, register_tiny_configs, write_catalog


@pytest.fixture(scope="session", autouse=True)
def _tiny_configs(tmp_path_factory: pytest.TempPathFactory) -> None:
    register_tiny_configs(tmp_path_factory.mktemp("configs"))


@pytest.fixture(scope="session")
def tiny_spec() -> EmbedderSpec:
    return EmbedderSpec(kind="open_clip", model_name=TINY_MODEL, pretrained="random", seed=0, batch_size=8)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_spec: EmbedderSpec) -> Embedder:
    return create_embedder(tiny_spec)


@pytest.fixture(scope="session")
def catalog_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("catalog"), 40)


@pytest.fixture(scope="session")
def built_index(
    tmp_path_factory: pytest.TempPathFactory, catalog_feed: Path, tiny_embedder: Embedder
) -> Path:
    out = tmp_path_factory.mktemp("index") / "index"
    build_index(
        catalog_feed,
        out,
        tiny_embedder,
        BuildOptions(progress=False, batch_size=16),
        create_extractor(tiny_embedder),
    )
    return out


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory: pytest.TempPathFactory):
    """One real redis-server for the whole run (tests/redis_server.py); skipped when it is not installed."""
    from tests.redis_server import RedisServer

    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_server_session):
    """The run's redis-server, emptied for this test (and started again if a test stopped it)."""
    if redis_server_session.process is None:
        redis_server_session.start()
    redis_server_session.flush()
    return redis_server_session
