"""The shared data set for the benchmarks' smoke runs; a test that asks for it skips when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.quality_data import missing_data
from tests.helpers import DATA_DIR


@pytest.fixture
def real_data() -> Path:
    missing = missing_data(DATA_DIR)
    if missing:
        pytest.skip(f"data not found under {DATA_DIR} ({missing[0]}; set FASHION_DATA_DIR)")
    return DATA_DIR
