from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from search.settings import EmbedderSettings, Settings
from service.app import create_app
from tests.helpers import TINY_MODEL


@pytest.fixture
def settings(built_index: Path) -> Settings:
    return Settings(
        index_dir=built_index,
        detector="full-frame",
        embedder=EmbedderSettings(kind="open_clip", model_name=TINY_MODEL, pretrained="random", batch_size=8),
        max_upload_bytes=200_000,
        max_image_pixels=1_000_000,
        max_top_k=20,
        queue_timeout_s=0.05,
        rate_limit_per_s=0,  # tests/service/test_access.py covers the limit with its own settings
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client
