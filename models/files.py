"""File helpers shared by the model loaders and the indexer."""

from __future__ import annotations

import hashlib
from pathlib import Path

from safetensors import SafetensorError, safe_open

from models.errors import ModelMismatchError


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_weights_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors weights file; ModelMismatchError when it is not one."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise ModelMismatchError(f"{path} is not a readable safetensors file: {exc}") from exc
