"""Atomic publication of index builds.

`--out DIR` is a symlink to `DIR.builds/<build-id>/`. A build is written into `DIR.builds/<id>.partial/`,
renamed when complete, and published by replacing the symlink in one rename(2). Readers therefore see
either the old index or the new one, never a half-written one; a failed or killed build leaves the link
untouched. One build at a time per DIR (a lock file); older builds are pruned, the newest few kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from indexer.manifest import MANIFEST_NAME
from models.errors import FashionSearchError

log = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".partial"


class BuildError(FashionSearchError):
    """A build could not complete; the previously published index is unchanged."""


class BuildLockedError(BuildError):
    """Another build or update of the same index holds its lock."""


def builds_root(out_dir: Path) -> Path:
    return out_dir.parent / f"{out_dir.name}.builds"


def check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_symlink():
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            return
        raise BuildError(
            f"{out_dir} exists and is not an index link made by fashion-search; "
            f"choose another --out or move it away"
        )


def unwritable(place: Path, exc: OSError) -> BuildError:
    """The refusal when the index's folders cannot be written (read-only, full disk, permissions)."""
    return BuildError(f"cannot write under {place}: {exc.strerror or exc}; the published index is unchanged")


@contextlib.contextmanager
def build_lock(out_dir: Path) -> Iterator[None]:
    root = builds_root(out_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / ".lock").open("a")
    except OSError as exc:
        raise unwritable(root, exc) from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildLockedError(
                f"another build or update of {out_dir} is running (lock {root / '.lock'}); retry when it ends"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_staging_dir(out_dir: Path) -> Path:
    """Remove partial builds left by killed runs (we hold the lock) and make a fresh staging dir."""
    root = builds_root(out_dir)
    for stale in root.glob(f"*{PARTIAL_SUFFIX}"):
        log.warning("removing leftover partial build %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    now_ns = time.time_ns()  # one clock reading: names sort in build order even across a second boundary
    build_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ns // 10**9)) + f"-{now_ns % 10**9:09d}"
    staging = root / f"{build_id}{PARTIAL_SUFFIX}"
    try:
        staging.mkdir()
    except OSError as exc:
        raise unwritable(root, exc) from exc
    return staging


def publish(staging: Path, out_dir: Path, keep: int, on_prune: Callable[[Path], None] | None = None) -> Path:
    """Finalise `staging` and point `out_dir` at it atomically. Returns the published build dir.
    `on_prune(build)` runs before an old build's directory is removed (to drop vectors held elsewhere)."""
    if not (staging / MANIFEST_NAME).is_file():
        raise BuildError(f"refusing to publish {staging}: it has no {MANIFEST_NAME}")
    final = staging.with_name(staging.name.removesuffix(PARTIAL_SUFFIX))
    for part in staging.iterdir():  # the data itself is on disk before the link can point at it
        if part.is_file():
            fsync_path(part)
    fsync_path(staging)
    os.rename(staging, final)
    try:
        _point_link(out_dir, final)
    except (OSError, BuildError) as exc:
        # Never published, so it must not count as a kept build (prune would drop a real one for it): back
        # to a partial build, which the caller discards.
        os.rename(final, staging)
        if isinstance(exc, BuildError):
            raise
        raise unwritable(out_dir.parent, exc) from exc
    fsync_path(out_dir.parent)
    prune(out_dir, keep, on_prune)
    return final


def _point_link(out_dir: Path, build: Path) -> None:
    """Replace the `out_dir` link by one to `build`, in one rename(2)."""
    check_out_dir(out_dir)
    if out_dir.exists() and not out_dir.is_symlink():
        out_dir.rmdir()  # an empty directory created by hand or by a volume mount
    link_tmp = out_dir.with_name(f".{out_dir.name}.link-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        link_tmp.unlink()
    try:
        os.symlink(os.path.relpath(build, out_dir.parent), link_tmp)
        os.replace(link_tmp, out_dir)
    except OSError:
        with contextlib.suppress(OSError):
            link_tmp.unlink()
        raise


def prune(out_dir: Path, keep: int, on_prune: Callable[[Path], None] | None = None) -> None:
    current = out_dir.resolve()
    builds = sorted(
        (p for p in builds_root(out_dir).iterdir() if p.is_dir() and not p.name.endswith(PARTIAL_SUFFIX)),
        key=lambda p: p.name,
    )
    for old in builds[: max(0, len(builds) - max(keep, 1))]:
        if old.resolve() != current:
            log.info("pruning old build %s", old)
            if on_prune is not None:
                on_prune(old)
            shutil.rmtree(old, ignore_errors=True)


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
