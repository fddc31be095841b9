"""Connections to Milvus through pymilvus, imported only when Milvus is used (FAISS deployments need neither
pymilvus nor milvus-lite). A server URI (`http://host:19530`, credentials as `http://user:password@...`) or a
local `*.db` path: Milvus Lite, embedded in this process, whose data one process holds at a time. Errors
become a VectorStoreError naming the collection and the address (credentials left out), never a raw
pymilvus exception.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from indexer.publish import fsync_path
from models.errors import ConfigError, FashionSearchError

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0  # per Milvus call, connecting included


class VectorStoreError(FashionSearchError):
    """Milvus could not be reached or refused a request; the message names the collection and address."""


def is_lite(uri: str) -> bool:
    """pymilvus's own rule: a URI ending in .db is a Milvus Lite data path."""
    return uri.endswith(".db")


def public_uri(uri: str) -> str:
    """The address without credentials, for messages and logs."""
    if is_lite(uri):
        return uri
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    return parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host).geturl()


class _LiteServers:
    """Milvus Lite runs one embedded server per data path, shared within the process, and holds the path's
    lock while it runs. Users are counted so the last to leave stops it: only then can the build directory
    be renamed (publish) or removed (prune), or another process open it."""

    def __init__(self) -> None:
        # Re-entrant: a backend's finalizer may run (garbage collection) in a thread that holds the lock.
        self._lock = threading.RLock()
        self._users: dict[str, int] = {}

    def acquire(self, path: str) -> None:
        with self._lock:
            if not self._users.get(path):
                _check_unlocked(path)
            self._users[path] = self._users.get(path, 0) + 1

    def release(self, path: str) -> None:
        with self._lock:
            left = self._users.get(path, 0) - 1
            if left > 0:
                self._users[path] = left
                return
            self._users.pop(path, None)
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(path)


_LITE = _LiteServers()


def connect(uri: str) -> Any:
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError as exc:
        raise ConfigError(
            "the Milvus vector store needs pymilvus (and milvus-lite for a local .db): "
            "install fashion-search[scale]"
        ) from exc
    lite_path = os.path.abspath(uri) if is_lite(uri) else None
    if lite_path is not None:
        _LITE.acquire(lite_path)
    try:
        return MilvusClient(uri=uri, timeout=TIMEOUT_S, dedicated=True)
    except MilvusException as exc:
        if lite_path is not None:
            _LITE.release(lite_path)
        raise VectorStoreError(f"cannot connect to Milvus at {public_uri(uri)}: {_reason(exc)}") from exc


def disconnect(client: Any, uri: str) -> None:
    try:
        client.close()
    except Exception as exc:  # closing is best effort; the server side times the connection out
        log.warning("closing the Milvus connection to %s failed: %s", public_uri(uri), exc)
    if is_lite(uri):
        _LITE.release(os.path.abspath(uri))


def _check_unlocked(path: str) -> None:
    """Milvus Lite fails with a logged traceback and a bare "Open local milvus failed" when another process
    holds the data; say so first."""
    lock = Path(path) / "LOCK"
    if not lock.is_file():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise VectorStoreError(
            f"Milvus Lite data {path} is in use by another process, and Milvus Lite serves one process at a "
            "time: stop that process, or serve the index from a Milvus server (FASHION_MILVUS_URI)"
        ) from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def translated(action: str, collection: str, uri: str) -> Iterator[None]:
    """pymilvus errors become a VectorStoreError naming the collection and address (never a raw one)."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise VectorStoreError(
            f"Milvus at {public_uri(uri)} failed to {action} collection {collection!r}: {_reason(exc)}"
        ) from exc


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc)


def fsync_tree(path: Path) -> None:
    """Milvus Lite's files are on disk before the build that holds them is published."""
    if path.is_file():
        fsync_path(path)
        return
    for root, _, files in os.walk(path):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(Path(root))
