"""Hot reload: open the index the configured link points at now, check it against the loaded models, and
swap it in. Requests already running finish on the index they started with; a bad index is refused and
the previous one keeps serving."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from indexer.search import OutfitSearcher
from indexer.store import IndexStore
from service.schemas import Reloaded

log = logging.getLogger(__name__)


def reload_index(app: FastAPI) -> Reloaded:
    with app.state.reload_lock:
        current: OutfitSearcher = app.state.searcher
        previous = current.store.build_dir.name
        store = IndexStore.open(app.state.settings.index_dir)
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
