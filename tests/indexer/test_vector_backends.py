"""The vector stores behind IndexStore: FAISS and Milvus (Lite, embedded) answer the same searches the same
way, and a Milvus build that cannot be served fails with an error naming the collection."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.build import BuildOptions, build_index
from indexer.filters import SearchFilters
from indexer.manifest import (
    MANIFEST_NAME,
    MILVUS_LITE_NAME,
    RAW_VECTORS_NAME,
    VECTORS_NAME,
    IndexCorruptError,
)
from indexer.milvus_backend import collection_name, row_filter
from indexer.milvus_connection import VectorStoreError, public_uri
from indexer.store import IndexStore
from indexer.vector_backend import discard_vectors, open_vectors
from models.attributes.extractor import create_extractor
from models.embedder import Embedder
from models.errors import ConfigError
from tests.helpers import garment_image

pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (the scale extra)")


@pytest.fixture
def store(backend_index: Path) -> IndexStore:
    opened = IndexStore.open(backend_index)
    yield opened
    opened.close()


def _raw(index: Path) -> np.ndarray:
    return np.load(index / RAW_VECTORS_NAME)


def _exact(raw: np.ndarray, query: np.ndarray, rows: np.ndarray, k: int) -> list[int]:
    scores = raw[rows] @ query
    return [int(rows[i]) for i in np.argsort(-scores, kind="stable")[:k]]


def test_every_indexed_vector_is_its_own_top1(store: IndexStore, backend_index: Path) -> None:
    raw = _raw(backend_index)
    hits = store.search(raw, top_k=1)
    assert [found[0].item.row for found in hits] == list(range(len(raw)))
    assert all(abs(found[0].score - 1.0) < 1e-4 for found in hits)


def test_filtered_search_returns_only_allowed_rows_and_fills_top_k(
    store: IndexStore, backend_index: Path
) -> None:
    raw = _raw(backend_index)
    query = raw[7:8]
    skirts = store.rows_for(SearchFilters(categories=frozenset({"skirt"})))
    assert skirts is not None
    hits = store.search(query, top_k=5, rows=skirts)[0]
    assert len(hits) == 5 and {hit.item.category for hit in hits} == {"skirt"}
    some = np.arange(0, len(raw), 3, dtype=np.int64)  # 14 of 40: `row in [...]`
    found = [hit.item.row for hit in store.search(query, top_k=10, rows=some)[0]]
    assert found == _exact(raw, query[0], some, 10)
    most = np.setdiff1d(np.arange(len(raw)), [7, 8, 30])  # 37 of 40: `row not in [...]`
    found = [hit.item.row for hit in store.search(query, top_k=40, rows=most)[0]]
    assert len(found) == 37 and not {7, 8, 30} & set(found) and found == _exact(raw, query[0], most, 40)


def test_k_larger_than_count_returns_every_item_best_first(store: IndexStore, backend_index: Path) -> None:
    raw = _raw(backend_index)
    hits = store.search(raw[:3], top_k=500)
    for query, found in zip(raw[:3], hits, strict=True):
        assert [hit.item.row for hit in found] == _exact(raw, query, np.arange(len(raw)), len(raw))
        scores = [hit.score for hit in found]
        assert scores == sorted(scores, reverse=True)


def test_empty_filter_finds_nothing_and_no_filter_finds_all(store: IndexStore, backend_index: Path) -> None:
    raw = _raw(backend_index)
    assert store.search(raw[:2], top_k=5, rows=np.zeros(0, dtype=np.int64)) == [[], []]
    assert store.rows_for(SearchFilters()) is None
    assert store.search(np.zeros((0, raw.shape[1]), np.float32), top_k=5) == []


def test_backend_answers_in_faiss_shapes(backend_index: Path) -> None:
    build = backend_index.resolve()
    from indexer.manifest import Manifest

    vectors = open_vectors(build, Manifest.read(build))
    try:
        raw = _raw(build)
        scores, rows = vectors.search(raw[:4], 10)
        assert scores.dtype == np.float32 and rows.dtype == np.int64 and scores.shape == rows.shape == (4, 10)
        assert rows[:, 0].tolist() == [0, 1, 2, 3]
        scores, rows = vectors.search(raw[:2], 10, np.array([5, 9, 11], dtype=np.int64))
        assert rows.shape == (2, 3) and set(rows[0].tolist()) == {5, 9, 11}
        # a repeated row: k' may keep a place for it, padded with -1
        scores, rows = vectors.search(raw[:2], 10, np.array([5, 9, 9], dtype=np.int64))
        assert set(rows[0][rows[0] >= 0].tolist()) == {5, 9} and set(rows[0].tolist()) <= {5, 9, -1}
        assert vectors.search(raw[:2], 10, np.zeros(0, np.int64))[1].shape == (2, 0)
        assert (vectors.count, vectors.dimension) == raw.shape
    finally:
        vectors.close()


def test_faiss_and_milvus_give_the_same_scores(
    built_index: Path, milvus_index: Path, tiny_embedder: Embedder
) -> None:
    queries = np.concatenate(
        [tiny_embedder.embed_images([garment_image(seed) for seed in (100, 101, 102)]), _raw(built_index)[:5]]
    )
    skirt = SearchFilters(categories=frozenset({"skirt"}))
    answers = []
    for index in (built_index, milvus_index):
        store = IndexStore.open(index)
        try:
            skirts = store.rows_for(skirt)  # Milvus filters by its category field, FAISS within these rows
            filtered = store.search(queries, top_k=6, rows=skirts, filters=skirt)
            answers.append((store.search(queries, top_k=12), filtered))
        finally:
            store.close()
    (faiss_all, faiss_skirts), (milvus_all, milvus_skirts) = answers
    for ours, theirs in ((faiss_all, milvus_all), (faiss_skirts, milvus_skirts)):
        for a, b in zip(ours, theirs, strict=True):
            assert [hit.item.row for hit in a] == [hit.item.row for hit in b]
            assert np.allclose([hit.score for hit in a], [hit.score for hit in b], atol=1e-4)


def _copy(index: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(index.resolve(), target, ignore=shutil.ignore_patterns("LOCK"))
    return target


def _edit_manifest(build: Path, **changes: object) -> None:
    path = build / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_missing_vector_data_is_a_clear_error(backend: str, backend_index: Path, tmp_path: Path) -> None:
    copy = _copy(backend_index, tmp_path)
    if backend == "faiss":
        (copy / VECTORS_NAME).unlink()
        expected = "vectors.faiss is missing"
    else:
        shutil.rmtree(copy / MILVUS_LITE_NAME)
        expected = r"milvus.db does not exist, so collection 'fashion_\w+' cannot be opened"
    with pytest.raises(IndexCorruptError, match=expected):
        IndexStore.open(copy)


def test_wrong_collection_is_a_clear_error(milvus_index: Path, tmp_path: Path) -> None:
    copy = _copy(milvus_index, tmp_path)
    _edit_manifest(copy, collection="fashion_elsewhere")
    with pytest.raises(IndexCorruptError, match="has no collection 'fashion_elsewhere'"):
        IndexStore.open(copy)
    _edit_manifest(copy, collection="")
    with pytest.raises(IndexCorruptError, match="a collection name exactly when it is 'milvus'"):
        IndexStore.open(copy)


def test_collection_that_disagrees_with_the_build_is_refused(milvus_index: Path, tmp_path: Path) -> None:
    from pymilvus import MilvusClient

    from indexer.manifest import Manifest

    copy = _copy(milvus_index, tmp_path)
    collection = Manifest.read(copy).collection
    client = MilvusClient(str(copy / MILVUS_LITE_NAME))
    try:
        other = np.zeros(_raw(copy).shape[1], np.float32)
        other[0] = 1.0
        client.load_collection(collection)
        (entity,) = client.get(collection, ids=[0], output_fields=["*"])  # with its filterable fields
        client.upsert(collection, [{**entity, "vector": other}])
        client.flush(collection)
    finally:
        client.close()
        _release_lite(copy / MILVUS_LITE_NAME)
    with pytest.raises(IndexCorruptError, match=r"holds other vectors than the build's vectors.npy \(row 0"):
        IndexStore.open(copy)
    client = MilvusClient(str(copy / MILVUS_LITE_NAME))
    try:
        client.delete(collection, ids=[39])
        client.flush(collection)
    finally:
        client.close()
        _release_lite(copy / MILVUS_LITE_NAME)
    with pytest.raises(IndexCorruptError, match=r"disagrees with itself: .*vector rows .*'milvus': 39"):
        IndexStore.open(copy)


def _release_lite(path: Path) -> None:
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(path))


def test_unreachable_milvus_is_a_clear_error_without_credentials(milvus_index: Path) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    expected = rf"cannot connect to Milvus at http://127.0.0.1:{port}"
    with pytest.raises(VectorStoreError, match=expected) as caught:
        IndexStore.open(milvus_index, milvus_uri=f"http://ops:s3cret@127.0.0.1:{port}")
    assert "s3cret" not in str(caught.value)
    assert public_uri("https://ops:pw@milvus.internal:443/db") == "https://milvus.internal:443/db"


def test_milvus_lite_held_by_another_process_is_a_clear_error(milvus_index: Path, tmp_path: Path) -> None:
    copy = _copy(milvus_index, tmp_path)
    lock = copy / MILVUS_LITE_NAME / "LOCK"
    lock.touch()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(VectorStoreError, match="in use by another process"):
            IndexStore.open(copy)
    finally:
        holder.kill()
        holder.wait()


def test_milvus_at_a_configured_address(
    catalog_feed: Path, tiny_embedder: Embedder, tmp_path: Path, built_index: Path
) -> None:
    """A URI from settings (here a Milvus Lite path outside the build, standing in for a server): the build
    keeps no Milvus data, opening needs the same address, and a discarded build's collection is dropped."""
    uri = str(tmp_path / "shared.db")
    out = tmp_path / "index"
    options = BuildOptions(
        progress=False, batch_size=16, vector_store="milvus", milvus_uri=uri, keep_builds=1
    )
    report = build_index(catalog_feed, out, tiny_embedder, options, create_extractor(tiny_embedder))
    assert not (report.build_dir / MILVUS_LITE_NAME).exists()
    assert report.manifest.collection == collection_name(report.build_dir.name)
    store = IndexStore.open(out, milvus_uri=uri)
    try:
        assert store.search(_raw(out)[:1], top_k=1)[0][0].item.row == 0
    finally:
        store.close()
    with pytest.raises(IndexCorruptError, match="configure the Milvus server that holds it"):
        IndexStore.open(out)
    discard_vectors(report.build_dir, "milvus", uri)
    with pytest.raises(IndexCorruptError, match=f"has no collection '{report.manifest.collection}'"):
        IndexStore.open(out, milvus_uri=uri)
    faiss_store = IndexStore.open(built_index, milvus_uri=uri)  # a FAISS build ignores the Milvus address
    faiss_store.close()


def test_milvus_build_options_are_checked_before_any_work(catalog_feed: Path, tmp_path: Path) -> None:
    never = object()  # no embedder: the options are refused first
    with pytest.raises(ConfigError, match="vector store 'pinecone' is not one of faiss, milvus"):
        build_index(
            catalog_feed,
            tmp_path / "a",
            never,  # type: ignore[arg-type]
            BuildOptions(vector_store="pinecone"),
            create_extractor(None),
        )
    with pytest.raises(ConfigError, match="Milvus index type 'IVF1024,PQ8' is not one this project builds"):
        build_index(
            catalog_feed,
            tmp_path / "b",
            never,  # type: ignore[arg-type]
            BuildOptions(vector_store="milvus", index_factory="IVF1024,PQ8"),
            create_extractor(None),
        )


def test_row_filter_expressions() -> None:
    assert row_filter(np.array([1, 4]), 10, templated=False) == ("row in [1,4]", {})
    assert row_filter(np.array([1, 4]), 10, templated=True) == ("row in {rows}", {"rows": [1, 4]})
    assert row_filter(np.arange(1, 9), 10, templated=False) == ("row not in [0,9]", {})
    expression, _ = row_filter(np.arange(0, 50_000, 2), 100_000, templated=False)
    assert expression.startswith("row in [0,2,4,") and expression.count(",") == 24_999


def test_pruned_builds_drop_their_server_collections(
    catalog_feed: Path, tiny_embedder: Embedder, tmp_path: Path
) -> None:
    from indexer.milvus_connection import connect

    uri = str(tmp_path / "server.db")  # a Milvus Lite path outside the build stands in for a server
    options = BuildOptions(
        progress=False, batch_size=16, vector_store="milvus", milvus_uri=uri, keep_builds=1
    )
    first = build_index(
        catalog_feed, tmp_path / "index", tiny_embedder, options, create_extractor(tiny_embedder)
    )
    second = build_index(
        catalog_feed, tmp_path / "index", tiny_embedder, options, create_extractor(tiny_embedder)
    )
    client = connect(uri)
    try:
        collections = set(client.list_collections())
    finally:
        client.close()
    assert second.manifest.collection in collections
    assert first.manifest.collection not in collections and not first.build_dir.exists()
