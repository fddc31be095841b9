"""The Ray-distributed describer: same output as the single-process build, resumable, clear failures.

One local Ray (2 CPUs) serves the whole module. Workers import this module to build their models, so the
tiny open_clip config is registered inside each worker by `tiny_models`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.build import BuildOptions, build_index, describe_items
from indexer.distributed import distributed_describer, ray_session
from indexer.feed import CatalogItem, read_feed
from indexer.publish import BuildError
from indexer.shards import ShardResult, default_shard_count, split_shards
from indexer.store import IndexStore
from models.attributes.extractor import AttributeExtractor, create_extractor
from models.embedder import Embedder
from models.spec import EmbedderSpec
from search.runtime import ModelFactory
from search.settings import Settings
from tests.helpers import garment_image, register_tiny_configs, write_catalog

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# Feeds here hold bad rows on purpose; the bad-row guard is tested in test_catalogue_guards.py.
QUIET = BuildOptions(progress=False, batch_size=16, max_bad_ratio=1.0)
MARKER_SIZE = (33, 33)  # an image of this size makes InstrumentedEmbedder fail


class InstrumentedEmbedder:
    """Counts embedded images into a file (workers are other processes) and fails on a marker image."""

    def __init__(self, inner: Embedder, counter: str | None, fail_on_marker: bool) -> None:
        self._inner, self._counter, self._fail = inner, counter, fail_on_marker
        self.name, self.dimension, self.has_text_tower = inner.name, inner.dimension, False

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if self._fail and any(image.size == MARKER_SIZE for image in images):
            raise RuntimeError("simulated worker crash on the marker image")
        if self._counter:
            with open(self._counter, "a", encoding="utf-8") as handle:
                handle.write(f"{len(images)}\n")
        return self._inner.embed_images(images)

    head_labels: dict[str, tuple[str, ...]] = {}  # no attribute heads

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, None]:
        return self.embed_images(images), None


def tiny_models(
    config_dir: str, spec: EmbedderSpec, counter: str | None = None, fail_on_marker: bool = False
) -> tuple[Embedder, AttributeExtractor]:
    """`make_models` for the workers: register the tiny config in this process, then build as usual."""
    import open_clip

    open_clip.add_model_config(Path(config_dir))
    settings = Settings(embedder={"kind": spec.kind, "model_name": spec.model_name,
                                  "pretrained": spec.pretrained, "batch_size": spec.batch_size})  # fmt: skip
    embedder, extractor = ModelFactory(settings)()
    return InstrumentedEmbedder(embedder, counter, fail_on_marker), extractor


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    pytest.importorskip("ray")
    with ray_session(None, num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}):
        yield


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("worker-configs")
    register_tiny_configs(directory)
    return str(directory)


def embedded(counter: Path) -> int:
    return sum(int(line) for line in counter.read_text().split()) if counter.exists() else 0


def catalogue_with_bad_rows(directory: Path) -> Path:
    """40 items, two undecodable images in different shards, and a duplicate row the feed reader drops."""
    feed = write_catalog(directory, 40)
    (directory / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (directory / "images" / "empty.png").write_bytes(b"")
    lines = feed.read_text(encoding="utf-8").splitlines()
    lines.insert(
        5, json.dumps({"id": "broken", "image": "images/broken.jpg", "title": "b", "category": "top"})
    )
    lines.insert(
        30, json.dumps({"id": "empty", "image": "images/empty.png", "title": "e", "category": "bag"})
    )
    lines.append(
        json.dumps({"id": "item-0001", "image": "images/item-0001.jpg", "title": "d", "category": "top"})
    )
    feed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return feed


def assert_same(got: ShardResult, expected: ShardResult) -> None:
    (got_rows, got_vectors, got_bad), (want_rows, want_vectors, want_bad) = got, expected
    assert [row[0] for row in got_rows] == [row[0] for row in want_rows]
    assert [row[1:] for row in got_rows] == [row[1:] for row in want_rows]
    assert got_vectors.dtype == np.float32 and got_vectors.shape == want_vectors.shape
    np.testing.assert_allclose(got_vectors, want_vectors, atol=1e-5)
    assert got_bad == want_bad


def shard_files(work: Path) -> list[str]:
    return sorted(path.name for path in work.iterdir())


def test_distributed_build_matches_single_process(
    local_ray: None, tmp_path: Path, config_dir: str, tiny_spec: EmbedderSpec, tiny_embedder: Embedder
) -> None:
    feed = catalogue_with_bad_rows(tmp_path / "catalog")
    items = read_feed(feed).items
    extractor = create_extractor(tiny_embedder)
    expected = describe_items(items, tiny_embedder, extractor, QUIET)
    assert len(expected[0]) == 40 and [row.item_id for row in expected[2]] == ["broken", "empty"]

    work = tmp_path / "work"
    describer = distributed_describer(partial(tiny_models, config_dir, tiny_spec), QUIET, work, shards=3)
    assert_same(describer(items), expected)
    assert shard_files(work) == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    assert describer.identity is not None and describer.identity.name == tiny_embedder.name

    single = build_index(feed, tmp_path / "single", tiny_embedder, QUIET, extractor)
    spread = build_index(feed, tmp_path / "spread", tiny_embedder, QUIET, extractor, describe=describer)
    assert spread.manifest.count == single.manifest.count == 40
    assert spread.bad_rows == single.bad_rows and len(spread.bad_rows) == 3
    queries = expected[1]
    stores = [IndexStore.open(tmp_path / "single"), IndexStore.open(tmp_path / "spread")]
    try:
        tops = [[hits[0].item.item_id for hits in store.search(queries, top_k=1)] for store in stores]
    finally:
        for store in stores:
            store.close()
    assert tops[0] == tops[1] == [row[0].item_id for row in expected[0]]


def test_resume_recomputes_only_missing_damaged_and_changed_shards(
    local_ray: None, tmp_path: Path, config_dir: str, tiny_spec: EmbedderSpec, catalog_feed: Path
) -> None:
    items = read_feed(catalog_feed).items
    counter, work = tmp_path / "embedded.txt", tmp_path / "work"
    make = partial(tiny_models, config_dir, tiny_spec, str(counter))
    first = distributed_describer(make, QUIET, work, shards=4)(items)
    assert embedded(counter) == 40 and len(shard_files(work)) == 4
    untouched = (work / "shard-00000.npz").stat().st_mtime_ns

    counter.unlink()
    (work / "shard-00001.npz").unlink()
    damaged = work / "shard-00003.npz"
    damaged.write_bytes(damaged.read_bytes()[:300])  # a torn file
    with np.load(work / "shard-00002.npz") as data:  # a valid archive whose vectors were altered
        vectors, meta = data["vectors"] + np.float32(0.5), data["meta"]
    with (work / "shard-00002.npz").open("wb") as handle:
        np.savez(handle, vectors=vectors, meta=meta)

    second = distributed_describer(make, QUIET, work, shards=4)(items)
    assert embedded(counter) == 30
    assert_same(second, first)
    assert (work / "shard-00000.npz").stat().st_mtime_ns == untouched

    counter.unlink()
    changed = [dataclasses.replace(items[0], title="Renamed garment"), *items[1:]]
    third = distributed_describer(make, QUIET, work, shards=4)(changed)
    assert embedded(counter) == 10  # only the first shard's items changed
    assert third[0][0][0].title == "Renamed garment"
    np.testing.assert_allclose(third[1], first[1], atol=1e-5)


def test_failing_shard_is_named_and_finished_shards_stay(
    local_ray: None, tmp_path: Path, config_dir: str, tiny_spec: EmbedderSpec
) -> None:
    feed = write_catalog(tmp_path / "catalog", 30)
    garment_image(27, size=MARKER_SIZE[0]).save(tmp_path / "catalog" / "images" / "item-0027.jpg")
    items: list[CatalogItem] = read_feed(feed).items
    work, counter = tmp_path / "work", tmp_path / "embedded.txt"

    failing = partial(tiny_models, config_dir, tiny_spec, None, True)
    with pytest.raises(
        BuildError, match=r"shard-00002.npz \(3/3: 10 items.*RuntimeError: simulated worker crash"
    ):
        distributed_describer(failing, QUIET, work, shards=3)(items)
    assert shard_files(work) == ["shard-00000.npz", "shard-00001.npz"]

    healthy = partial(tiny_models, config_dir, tiny_spec, str(counter))
    described, vectors, bad = distributed_describer(healthy, QUIET, work, shards=3)(items)
    assert embedded(counter) == 10 and len(described) == 30 and vectors.shape == (30, 32) and not bad


def test_models_that_cannot_load_are_a_build_error(local_ray: None, tmp_path: Path) -> None:
    settings = Settings(
        embedder={"kind": "open_clip", "model_name": "no-such-architecture", "pretrained": "random"}
    )
    items = read_feed(write_catalog(tmp_path / "catalog", 2)).items
    with pytest.raises(BuildError, match="could not load the models"):
        distributed_describer(ModelFactory(settings), QUIET, tmp_path / "work")(items)


def test_workers_with_another_model_than_the_driver_are_refused(
    local_ray: None, tmp_path: Path, config_dir: str, tiny_spec: EmbedderSpec
) -> None:
    items = read_feed(write_catalog(tmp_path / "catalog", 2)).items
    make = partial(tiny_models, config_dir, tiny_spec)
    describer = distributed_describer(make, QUIET, tmp_path / "work", expected_model="open_clip:ViT-B-32/x")
    with pytest.raises(
        BuildError, match="workers load open_clip:test-tiny-vit.*this build is for open_clip:ViT"
    ):
        describer(items)
    assert not list((tmp_path / "work").iterdir())


def test_shards_are_contiguous_near_equal_and_cover_every_item(tmp_path: Path) -> None:
    items = read_feed(write_catalog(tmp_path, 10)).items
    shards = split_shards(items, 3)
    assert [len(shard.items) for shard in shards] == [3, 3, 4]
    assert [item for shard in shards for item in shard.items] == items
    assert str(shards[1]).startswith(
        "shard-00001.npz (2/3: 3 items, feed lines 4-6, ids item-0003..item-0005)"
    )
    assert len(split_shards(items, 50)) == 10
    assert (default_shard_count(40, 2), default_shard_count(10_000, 2), default_shard_count(3, 16)) == (
        2,
        5,
        3,
    )


def test_importing_the_module_does_not_import_ray() -> None:
    code = "import sys, indexer.distributed; assert 'ray' not in sys.modules, 'ray imported eagerly'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=os.environ
    )
    assert result.returncode == 0, result.stderr
