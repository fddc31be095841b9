"""Shard files of a distributed build: contiguous splits of the feed, their keys, and atomic storage.

`work_dir/shard-NNNNN.npz` holds one shard's vectors and, as JSON, its described rows and bad rows, under a
key over everything the result depends on (model identity, image-size limit, every feed field, each image
file's size and mtime) and a checksum of the vectors. A stale, damaged or inconsistent file is never
trusted: `load_shard` returns None and the shard is computed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.build import BuildOptions, Described
from indexer.feed import BadRow, CatalogItem
from indexer.publish import fsync_path
from models.attributes.guess import AttributeGuess

log = logging.getLogger(__name__)
SHARD_ITEMS = 2_000  # default shard size for large catalogues
SHARD_FORMAT = 1
ShardResult = tuple[list[Described], np.ndarray, list[BadRow]]


@dataclass(frozen=True)
class ModelIdentity:
    """What a worker's models are, as far as the output depends on it."""

    name: str
    dimension: int
    predicted_groups: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name} (dimension {self.dimension}, predicts {', '.join(self.predicted_groups)})"


@dataclass(frozen=True)
class Shard:
    index: int
    total: int
    items: list[CatalogItem]

    @property
    def file_name(self) -> str:
        return f"shard-{self.index:05d}.npz"

    def __str__(self) -> str:
        first, last = self.items[0], self.items[-1]
        return (
            f"{self.file_name} ({self.index + 1}/{self.total}: {len(self.items)} items, "
            f"feed lines {first.line}-{last.line}, ids {first.item_id}..{last.item_id})"
        )


def split_shards(items: list[CatalogItem], count: int) -> list[Shard]:
    """`count` contiguous shards of near-equal size (fewer when there are fewer items)."""
    count = max(1, min(count, len(items)))
    bounds = [len(items) * part // count for part in range(count + 1)]
    return [Shard(i, count, items[bounds[i] : bounds[i + 1]]) for i in range(count)]


def default_shard_count(n_items: int, workers: int) -> int:
    """About SHARD_ITEMS items a shard, and at least one shard per worker."""
    return max(math.ceil(n_items / SHARD_ITEMS), min(workers, n_items), 1)


def shard_key(shard: Shard, identity: ModelIdentity, options: BuildOptions) -> str:
    """Everything a shard's output depends on: a stored shard under another key is recomputed."""
    digest = hashlib.sha256()
    header = {
        "format": SHARD_FORMAT,
        "model": dataclasses.asdict(identity),
        "max_image_pixels": options.max_image_pixels,
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for item in shard.items:
        fields = dataclasses.asdict(item)
        fields["image"] = str(item.image)
        try:
            stat = item.image.stat()
            fields["image_file"] = [stat.st_size, stat.st_mtime_ns]
        except OSError:
            fields["image_file"] = None
        digest.update(json.dumps(fields, sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def save_shard(path: Path, key: str, result: ShardResult) -> None:
    """Write one shard's result atomically (temporary file, fsync, rename)."""
    described, vectors, bad = result
    meta = {
        "format": SHARD_FORMAT,
        "key": key,
        "vectors_sha256": hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest(),
        "described": [
            {"id": item.item_id, "attributes": {g: a.to_json() for g, a in attrs.items()}, "extra": extra}
            for item, attrs, extra in described
        ],
        "bad": [{"line": row.line, "id": row.item_id, "reason": row.reason} for row in bad],
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            text = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
            np.savez(handle, vectors=np.ascontiguousarray(vectors), meta=text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_shard(path: Path, key: str, shard: Shard, dimension: int) -> ShardResult | None:
    """A stored shard's result, or None (logged) when it is missing, stale, damaged or inconsistent."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            vectors = np.array(data["vectors"])
            meta = json.loads(data["meta"].tobytes().decode("utf-8"))
        if meta.get("key") != key:
            log.info("%s is stale (the feed, images or model changed); recomputing", path.name)
            return None
        return _parse_shard(meta, vectors, shard, dimension)
    except Exception as exc:  # any damage means: do not trust it, compute it again
        log.warning("%s is unreadable or inconsistent (%s); recomputing", path.name, exc)
        return None


def _parse_shard(meta: dict[str, Any], vectors: np.ndarray, shard: Shard, dimension: int) -> ShardResult:
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != dimension:
        raise ValueError(f"vectors {vectors.dtype} {vectors.shape}, expected float32 (n, {dimension})")
    if hashlib.sha256(vectors.tobytes()).hexdigest() != meta["vectors_sha256"]:
        raise ValueError("vectors do not match their checksum")
    by_id = {item.item_id: item for item in shard.items}
    bad = [BadRow(by_id[row["id"]].line, row["id"], str(row["reason"])) for row in meta["bad"]]
    bad_ids = {row.item_id for row in bad}
    kept = [row["id"] for row in meta["described"]]
    if len(bad_ids) != len(bad) or kept != [i.item_id for i in shard.items if i.item_id not in bad_ids]:
        raise ValueError("its rows do not cover the shard's items once each, in order")
    if len(kept) != len(vectors):
        raise ValueError(f"{len(kept)} items but {len(vectors)} vectors")
    described: list[Described] = [
        (
            by_id[row["id"]],
            {str(g): AttributeGuess.from_json(a) for g, a in row["attributes"].items()},
            {str(k): str(v) for k, v in row["extra"].items()},
        )
        for row in meta["described"]
    ]
    return described, vectors, bad


def assemble_shards(shards: list[Shard], results: dict[int, ShardResult], dimension: int) -> ShardResult:
    described: list[Described] = []
    bad: list[BadRow] = []
    chunks = [np.zeros((0, dimension), np.float32)]
    for shard in shards:
        shard_described, vectors, shard_bad = results[shard.index]
        described.extend(shard_described)
        chunks.append(vectors)
        bad.extend(shard_bad)
    return described, np.concatenate(chunks).astype(np.float32, copy=False), bad
