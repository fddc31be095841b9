"""File helpers shared by the model loaders and the indexer."""

from __future__ import annotations

import hashlib
from pathlib import Path

from safetensors import SafetensorError, safe_open

from models.errors import ModelMismatchError, WeightsNotFoundError


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
        with safe_open(str(path), framework="numpy") as handle:  # metadata only: no PyTorch
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise ModelMismatchError(f"{path} is not a readable safetensors file: {exc}") from exc


def require_weights(path: Path, what: str, train_command: str, card: str) -> Path:
    """`path` when it is a file; else WeightsNotFoundError naming the file, how to train it and its card."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{what} weights {path} do not exist; train them with `{train_command.format(path=path)}` (see "
            f"{card}) or point the setting at the shipped file"
        )
    return path
