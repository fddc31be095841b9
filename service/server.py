"""How the HTTP server runs: the uvicorn options that `fashion-search serve` passes, in one place."""

from __future__ import annotations

import math
from typing import Any

from search.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run(app, ...)`."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "lifespan": "on",
        # On SIGTERM uvicorn stops accepting, lets in-flight requests finish for this long, then cuts the
        # rest (a slow client must not hold a rolling update). It takes whole seconds.
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_timeout_s),
    }
