"""manifest.json: what an index was built from and with. Written last, so its presence marks a whole build."""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from models.errors import FashionSearchError

FORMAT_VERSION = 2  # 2: per-item attributes with confidence and source
MANIFEST_NAME = "manifest.json"
VECTORS_NAME = "vectors.faiss"
METADATA_NAME = "items.sqlite"


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

    def write(self, directory: Path) -> None:
        path = directory / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

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
        required = {f.name for f in fields(cls) if f.default is MISSING}
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
        return cls(**values)
