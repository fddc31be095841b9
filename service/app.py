"""App factory. The lifespan loads the embedder, detector and index, and refuses a mismatched pair."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import faiss
from fastapi import FastAPI

from indexer.search import OutfitSearcher
from indexer.store import IndexStore
from models.detector import create_detector
from models.embedder import create_embedder
from service.errors import install_error_handlers
from service.limiter import SearchLimiter
from service.routes import router
from service.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        faiss.omp_set_num_threads(settings.faiss_threads)
        store = IndexStore.open(settings.index_dir)
        try:
            embedder = create_embedder(settings.embedder.to_spec())
            app.state.searcher = OutfitSearcher(create_detector(settings.detector), embedder, store)
            app.state.limiter = SearchLimiter(settings.max_concurrent_searches, settings.queue_timeout_s)
            log.info("ready: %d items, model %s", store.count, embedder.name)
            yield
        finally:
            store.close()

    app = FastAPI(
        title="Fashion visual search",
        version="0.1.0",
        summary="Detect every garment in a photo and find similar catalogue products.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(router)
    return app
