"""Runtime and thread settings: defaults, validation, and the process-wide thread counts they set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faiss
import pytest
import torch
from pydantic import ValidationError

from search.runtime import ModelFactory, apply_threads, build_embedder, build_extractor, build_searcher
from search.settings import Settings


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    yield
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)


def test_shipped_networks_default_to_onnx_runtime_and_bad_runtimes_are_refused() -> None:
    settings = Settings()
    assert settings.detector_runtime == "onnx" and settings.embedder.runtime == "onnx"
    assert settings.embedder.to_spec().runtime == "onnx"
    with pytest.raises(ValidationError, match="detector_runtime"):
        Settings(detector_runtime="tensorrt")
    with pytest.raises(ValidationError, match="runtime"):
        Settings(embedder={"runtime": "tvm"})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, 1),  # both networks on ONNX Runtime: PyTorch only does light array work
        ({"torch_threads": 2}, 2),  # an explicit count wins
        ({"detector_runtime": "torch"}, None),  # a PyTorch network keeps PyTorch's default
        ({"embedder": {"runtime": "torch"}}, None),
    ],
)
def test_apply_threads_sets_torch_and_faiss_threads(overrides: dict, expected: int | None) -> None:
    torch.set_num_threads(3)
    apply_threads(Settings(faiss_threads=2, **overrides))
    assert torch.get_num_threads() == (3 if expected is None else expected)
    assert faiss.omp_get_max_threads() == 2


def test_onnx_runtime_search_matches_the_torch_runtime(tmp_path: Path) -> None:
    """The service's default (ONNX Runtime) and the PyTorch path find the same garments and matches."""
    from indexer.build import BuildOptions, build_index
    from indexer.store import IndexStore
    from scripts.demo_catalog import generate_catalog, street_scene
    from search.searcher import SearchRequest

    catalog = generate_catalog(tmp_path / "catalog", n_items=24, n_scenes=1, size=96)
    torch_settings = Settings(
        index_dir=tmp_path / "index", detector_runtime="torch", embedder={"runtime": "torch"}
    )
    embedder = build_embedder(torch_settings)
    quiet = BuildOptions(progress=False)
    build_index(catalog.feed, tmp_path / "index", embedder, quiet, build_extractor(torch_settings, embedder))
    scene = street_scene(2, seed=1)
    found = {}
    for name, settings in (("torch", torch_settings), ("onnx", Settings(index_dir=tmp_path / "index"))):
        store = IndexStore.open(tmp_path / "index")
        try:
            result = build_searcher(settings, store).search(scene, SearchRequest(top_k=5))
        finally:
            store.close()
        found[name] = [
            (g.garment.box, g.garment.category, [m.item.item_id for m in g.matches]) for g in result.garments
        ]
    assert found["torch"] and found["onnx"] == found["torch"]


def test_the_ray_model_factory_builds_what_the_driver_builds() -> None:
    """The picklable factory the Ray workers get builds the same embedder and extractor as the CLI."""
    import pickle

    settings = Settings(zero_shot=False)
    factory = pickle.loads(pickle.dumps(ModelFactory(settings)))
    embedder, extractor = factory()
    driver = build_embedder(settings)
    assert (embedder.name, embedder.dimension) == (driver.name, driver.dimension)
    assert extractor.predicted_groups == build_extractor(settings, driver).predicted_groups
