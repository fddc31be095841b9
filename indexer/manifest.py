"""manifest.json: what an index was built from and with. Written last, so its presence marks a whole build."""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from models.errors import FashionSearchError
from models.files import file_digest

FORMAT_VERSION = 2  # 2: per-item attributes with confidence and source
MANIFEST_NAME = "manifest.json"
VECTORS_NAME = "vectors.faiss"
METADATA_NAME = "items.sqlite"
RAW_VECTORS_NAME = "vectors.npy"  # float32 (n, d) in row order: updates and re-indexing start from it
DATA_NAMES = (VECTORS_NAME, METADATA_NAME, RAW_VECTORS_NAME)
MILVUS_LITE_NAME = "milvus.db"  # Milvus Lite's data, inside the build, when no Milvus server URI is given
VECTOR_STORES = ("faiss", "milvus")  # where a build's searchable vectors live


class IndexCorruptError(FashionSearchError):
    """An index directory is missing files or its parts disagree."""


@dataclass(frozen=True)
class Manifest:
    model_name: str
    dimension: int
    metric: str
    count: int
    index_type: str
    feed_sha256: str
    feed_path: str
    created_at: str
    skipped_rows: int
    build_seconds: float
    detector: str
    format_version: int = FORMAT_VERSION
    predicted_attributes: tuple[str, ...] = ()  # groups predicted at index time where the feed had none
    # SHA-256 of each data file, recorded when the build is sealed; empty in manifests from older builds.
    checksums: dict[str, str] = field(default_factory=dict, hash=False)
    # "faiss": vectors.faiss in the build; "milvus": `collection` in Milvus (the address comes from settings,
    # so one build can be served by another Milvus; without one, Milvus Lite's data inside the build).
    vector_store: str = "faiss"
    collection: str = ""
    # Vector-store rows: `count` main images, then the items' further images; 0 in older manifests (= count).
    vectors: int = 0

    @property
    def vector_count(self) -> int:
        return self.vectors or self.count

    def write(self, directory: Path) -> Manifest:
        """Seal the build in `directory`: record its data files' checksums (unless given) and write
        manifest.json last, atomically. Returns the manifest as written."""
        sealed = self if self.checksums else replace(self, checksums=data_checksums(directory))
        path = directory / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(asdict(sealed), handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return sealed

    def verify(self, directory: Path) -> None:
        """Refuse data files that changed since the build (bit rot, a partial copy, a hand edit): FAISS reads
        a vector file whose numbers are damaged without complaint, and would serve wrong neighbours."""
        for name, recorded in sorted(self.checksums.items()):
            path = directory / name
            try:
                found = file_digest(path)
            except OSError as exc:
                raise IndexCorruptError(
                    f"{path} cannot be read ({exc.strerror or exc}): the index is incomplete or damaged; "
                    "rebuild it or serve an older build"
                ) from exc
            if found != recorded:
                raise IndexCorruptError(
                    f"{path} is damaged or was changed after the build: its SHA-256 is {found[:12]}..., "
                    f"{MANIFEST_NAME} recorded {recorded[:12]}...; rebuild the index or serve an older build"
                )

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise IndexCorruptError(f"{path} does not exist: {directory} is not a built index")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexCorruptError(f"{path} is not readable JSON: {exc}") from exc
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(data)) if isinstance(data, dict) else sorted(required)
        if not isinstance(data, dict) or missing:
            raise IndexCorruptError(f"{path} lacks field(s): {', '.join(missing)}")
        if data.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise IndexCorruptError(
                f"{path} has format_version {data.get('format_version')}; this build reads "
                f"{FORMAT_VERSION}: rebuild it with `fashion-search index build`"
            )
        values = {k: v for k, v in data.items() if k in names}
        values["predicted_attributes"] = tuple(values.get("predicted_attributes", ()))
        checksums = values.get("checksums", {})
        if not isinstance(checksums, dict) or not all(
            name in DATA_NAMES and isinstance(digest, str) for name, digest in checksums.items()
        ):
            raise IndexCorruptError(f"{path} has malformed checksums: {checksums!r:.200}")
        store, collection = values.get("vector_store", "faiss"), values.get("collection", "")
        if (
            store not in VECTOR_STORES
            or not isinstance(collection, str)
            or (store == "milvus") != bool(collection)
        ):
            raise IndexCorruptError(
                f"{path} has vector_store {store!r} with collection {collection!r}; expected "
                f"{' or '.join(map(repr, VECTOR_STORES))}, and a collection name exactly when it is 'milvus'"
            )
        return cls(**values)


def data_checksums(directory: Path) -> dict[str, str]:
    """SHA-256 of the data files present in a build directory."""
    return {name: file_digest(directory / name) for name in DATA_NAMES if (directory / name).is_file()}
