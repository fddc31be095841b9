"""App factory. The lifespan loads the embedder, detector and index, and refuses a mismatched pair."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from indexer.store import IndexStore
from models.attributes.taxonomy import load_taxonomy
from search.query_cache import QueryCache
from search.runtime import apply_threads, build_searcher
from search.settings import Settings
from service.access import RATE_LIMIT_HEADERS, Limiter, RateLimiter, install_access_control
from service.body_limit import BodyLimitMiddleware, BodyLimits
from service.coview import SessionStore
from service.docs import install_docs
from service.errors import install_error_handlers
from service.limiter import SearchLimiter
from service.metrics import ServiceMetrics, install_metrics
from service.openapi import install_openapi
from service.profile_routes import router as profile_router
from service.profiles import ProfileStore, SqliteProfiles
from service.query_cache_redis import SharedQueryCache
from service.rate_limits_redis import RedisRateLimiter
from service.reload import watch_index
from service.routes import router
from service.shared_state import RedisState
from service.shop_routes import STATIC_DIR
from service.shop_routes import router as shop_router
from service.signals import ShopperSignals
from service.signals_redis import RedisShopperSignals

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        apply_threads(settings)
        store = IndexStore.open(settings.index_dir, settings.milvus_uri)
        stop_watching = threading.Event()
        # Open event streams end on SIGTERM at once, not after the graceful-shutdown timeout.
        restore_signals = end_streams_on_stop_signal(app.state.sessions, asyncio.get_running_loop())
        try:
            await app.state.sessions.start()
            app.state.searcher = build_searcher(settings, store)
            app.state.limiter = SearchLimiter(
                settings.max_concurrent_searches, settings.queue_timeout_s, metrics.waiting, metrics.in_flight
            )
            metrics.set_index(store.build_dir.name, store.manifest.model_name, store.count)
            log.info("ready: %d items, model %s", store.count, app.state.searcher.embedder.name)
            if settings.reload_poll_s > 0:
                watch_index(app, settings.reload_poll_s, stop_watching)
            yield
        finally:
            restore_signals()
            app.state.sessions.close_streams()
            await app.state.sessions.aclose()
            if isinstance(app.state.profiles, SqliteProfiles):
                app.state.profiles.close()
            if app.state.shared_state is not None:
                await app.state.shared_state.aclose()
                app.state.shared_state.close()
            stop_watching.set()
            searcher = getattr(app.state, "searcher", None)
            (searcher.store if searcher is not None else store).close()  # after reloads, the current one

    app = FastAPI(
        title="Fashion visual search",
        version="0.1.0",
        summary="Detect every garment in a photo and find similar catalogue products.",
        lifespan=lifespan,
        docs_url=None,  # service/docs.py serves /docs from the package's files, not a CDN
        redoc_url=None,
    )
    metrics = ServiceMetrics(deadline_s=settings.request_timeout_s)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.reload_lock = threading.Lock()
    install_state(app, settings)
    # Middleware added later runs earlier: CORS (outermost, answers preflights), metrics (sees every
    # answer), keys and rate limits (before any body is read), body limits (counted as the body streams in:
    # service/body_limit.py), then the error net.
    install_error_handlers(app)
    limits = BodyLimits(
        settings.max_upload_bytes,
        settings.max_admin_body_bytes,
        settings.max_json_body_bytes,
        settings.max_batch_body_bytes,
    )
    app.add_middleware(BodyLimitMiddleware, limits=limits)
    rate_limiter = rate_limiter_for(settings, app.state.shared_state)
    install_access_control(
        app,
        settings.admin_key,
        settings.search_keys,
        rate_limiter,
        trusted_proxies=settings.trusted_proxies,
        key_multiple=settings.rate_limit_key_multiple,
    )
    install_metrics(app, metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "X-Request-ID", "Content-Type"],
            expose_headers=["X-Request-ID", "Retry-After", *RATE_LIMIT_HEADERS],
            max_age=600,
        )
    app.include_router(router)
    app.include_router(shop_router)
    app.include_router(profile_router)
    install_openapi(app)
    install_docs(app)
    # The page's files; check_dir=False: the app starts (and the API serves) without them.
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app


def install_state(app: FastAPI, settings: Settings) -> None:
    """Co-viewing sessions, shopper statistics and the paging cache: in this process, or, with
    FASHION_REDIS_URL, in the Redis every replica shares (service/shared_state.py)."""

    def known_categories() -> list[str]:
        categories: list[str] = app.state.searcher.store.categories
        return categories

    local_cache = QueryCache(settings.query_cache_ttl_s, settings.query_cache_entries)
    session_limits = (settings.session_ttl_s, settings.session_max_age_s, settings.max_sessions)
    if settings.redis_url is None:
        app.state.shared_state = None
        app.state.sessions = SessionStore(*session_limits, settings.stream_ping_s)
        app.state.signals = ShopperSignals(known_categories)
        app.state.query_cache = local_cache
        app.state.profiles = profile_store(settings, None)
        return
    from service.coview_redis import RedisSessionStore

    shared = RedisState(
        settings.redis_url.get_secret_value(), settings.redis_prefix, settings.redis_timeout_s
    )
    app.state.shared_state = shared
    app.state.sessions = RedisSessionStore(shared, *session_limits, settings.stream_ping_s)
    app.state.signals = RedisShopperSignals(shared, known_categories)
    app.state.query_cache = SharedQueryCache(shared, local_cache, lambda: app.state.searcher.store.item)
    app.state.profiles = profile_store(settings, shared)


def profile_store(settings: Settings, shared: RedisState | None) -> ProfileStore | None:
    """Server-side style profiles when the shop enables them: in Redis with FASHION_REDIS_URL, else SQLite."""
    if not settings.profiles_enabled:
        return None
    taxonomy = load_taxonomy()
    if shared is not None:
        from service.profiles_redis import RedisProfiles

        return RedisProfiles(shared, settings.profile_ttl_s, taxonomy, max_profiles=settings.max_profiles)
    return SqliteProfiles(
        settings.profiles_path, settings.profile_ttl_s, taxonomy, max_profiles=settings.max_profiles
    )


def rate_limiter_for(settings: Settings, shared: RedisState | None) -> Limiter | None:
    if settings.rate_limit_per_s <= 0:
        return None
    local = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    if shared is None:
        return local
    return RedisRateLimiter(shared, settings.rate_limit_per_s, settings.rate_limit_burst, fallback=local)


def end_streams_on_stop_signal(store: SessionStore, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Let SIGTERM/SIGINT end the open streams at once, then call the server's own handler.

    uvicorn waits for open responses before it runs the lifespan's shutdown, so an event stream would hold
    a graceful stop until its timeout. Only where a Python handler is installed (a server's, in the main
    thread); returns a function that puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(store.close_streams)
        previous[signum](signum, frame)

    for signum in (signal.SIGTERM, signal.SIGINT):
        if callable(signal.getsignal(signum)):
            previous[signum] = signal.signal(signum, handle)

    def restore() -> None:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is handle:
                signal.signal(signum, handler)

    return restore
