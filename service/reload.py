"""Hot reload: open the index the configured link points at now, check it against the loaded models, and
swap it in. Requests already running finish on the index they started with; a bad index is refused and
the previous one keeps serving."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import FastAPI

from indexer.store import IndexStore
from models.errors import FashionSearchError
from search.searcher import OutfitSearcher
from service.schemas import Reloaded

log = logging.getLogger(__name__)


def reload_index(app: FastAPI) -> Reloaded:
    with app.state.reload_lock:
        current: OutfitSearcher = app.state.searcher
        previous = current.store.build_dir.name
        store = IndexStore.open(app.state.settings.index_dir, app.state.settings.milvus_uri)
        try:
            searcher = current.with_store(store)
        except Exception:
            store.close()
            raise
        app.state.searcher = searcher  # one reference swap: new requests see the new index
        build = store.build_dir.name
        app.state.metrics.set_index(build, store.manifest.model_name, store.count)
        # The old store is not closed here: requests in flight may still read it; it closes when collected.
    log.info("reloaded index: %s -> %s (%d items)", previous, build, store.count)
    return Reloaded(build=build, previous_build=previous, items=store.count, changed=build != previous)


def watch_index(app: FastAPI, interval_s: float, stop: threading.Event) -> threading.Thread:
    """Poll the index link every `interval_s` and reload when it points at another build (a CLI build or
    update). A build that is refused is logged once and the current one keeps serving."""

    def loop() -> None:
        refused: Path | None = None
        while not stop.wait(interval_s):
            try:
                target = app.state.settings.index_dir.resolve()
                if target in (app.state.searcher.store.build_dir, refused):
                    continue
                reload_index(app)
                refused = None
            except FashionSearchError as exc:
                refused = target
                log.error(
                    "the index link points at a build that was refused; still serving the old one: %s", exc
                )
            except Exception:
                log.exception("index watcher: unexpected error; still serving the current index")

    thread = threading.Thread(target=loop, name="index-watcher", daemon=True)
    thread.start()
    return thread
