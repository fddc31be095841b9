"""`fashion-search`: one entry point for ops.
Verbs: index build | add | upsert | delete | sync | verify | info, search, serve.

Names and flags are a contract with scripts and monitoring: keep them stable."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Literal

import typer

from scripts.cli_support import OUR_LOGGERS, fail, load_settings, run_command
from scripts.index_commands import index_app

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False
)
app.add_typer(index_app, name="index")


@app.command("search")
def search(
    image: Annotated[Path, typer.Argument(help="photo to search with")],
    index: Annotated[Path, typer.Option(help="index link or build directory")],
    top_k: Annotated[int, typer.Option(min=1, max=1000)] = 5,
    category: Annotated[str | None, typer.Option(help="only match this category")] = None,
    text: Annotated[str | None, typer.Option(help='refinement, e.g. "in red, not striped"')] = None,
    filters: Annotated[
        str | None, typer.Option(help='JSON, e.g. {"price_max": 50, "attributes": {"pattern": "solid"}}')
    ] = None,
    weights: Annotated[str | None, typer.Option(help='JSON group weights, e.g. {"colour": 3}')] = None,
    attribute_weight: Annotated[float | None, typer.Option(help="0 = visual only")] = None,
    profile: Annotated[
        str | None, typer.Option(help='style profile JSON, e.g. {"colours": ["navy"], "styles": ["casual"]}')
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(help="x0,y0,x1,y1 in pixels of the upright photo: search this box, no detection"),
    ] = None,
) -> None:
    """Answer one query locally and print the service's JSON response."""

    def body() -> None:
        from indexer.store import IndexStore
        from models.attributes.taxonomy import load_taxonomy
        from models.images import decode_image
        from search.query import search_request
        from search.responses import Answering, search_response
        from search.runtime import build_searcher

        settings = load_settings(index_dir=index)
        if not image.is_file():
            fail(f"image {image} does not exist")
        box = f"[{region.strip().strip('[]')}]" if region else None  # the form field's JSON array
        options = search_request(
            settings, load_taxonomy(), top_k, category, text, filters, weights, profile, attribute_weight, box
        )
        picture = decode_image(image.read_bytes(), settings.max_image_pixels)
        store = IndexStore.open(index, settings.milvus_uri)
        try:
            result = build_searcher(settings, store).search(picture, options)
        finally:
            store.close()
        answering = Answering(
            confident_score=settings.confident_score,
            confident_score_product=settings.confident_score_product,
        )
        response = search_response(result, picture.size, result.timings_ms, answering)
        typer.echo(response.model_dump_json(indent=2))

    run_command(body)


@app.command("serve")
def serve(
    index: Annotated[Path, typer.Option(help="index link to serve")],
    host: Annotated[str | None, typer.Option(help="bind address (default FASHION_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default FASHION_PORT or 8000)")] = None,
) -> None:
    """Start the HTTP service (uvicorn). SIGTERM stops it gracefully: no new connections, requests in flight
    finish (for at most FASHION_SHUTDOWN_TIMEOUT_S), then exit 0."""

    def body() -> None:
        import uvicorn

        from service.app import create_app
        from service.server import uvicorn_options

        settings = load_settings(index_dir=index, host=host, port=port)
        app = StartupGuard(create_app(settings))
        signal.signal(signal.SIGTERM, _exit_cleanly)
        try:
            uvicorn.run(app, **uvicorn_options(settings))
        except SystemExit:
            if app.failure is not None:  # uvicorn exits 3 when the lifespan fails; say why in one line
                raise app.failure from None
            raise

    run_command(body)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """SIGTERM is a normal stop: uvicorn drains and then re-raises the signal, which ends here with status 0
    (the default action would report death by signal)."""
    raise SystemExit(0)


class StartupGuard:
    """ASGI wrapper for `serve`: when the app's lifespan fails to start (a corrupt index, missing weights),
    keep the exception for the CLI's one-line error instead of letting uvicorn log its traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.failure: Exception | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_quietly(message: Any) -> None:
            nonlocal started
            if message["type"] == "lifespan.startup.complete":
                started = True
            elif message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}  # uvicorn would log what it carries: the traceback
            await send(message)

        try:
            await self.app(scope, receive, send_quietly)
        except Exception as exc:
            if not started:
                self.failure = exc
            raise  # uvicorn then ends startup and exits with status 3


def main() -> None:
    # Our loggers (and uvicorn's, which propagate to the root's handler: the same format) at INFO; third-party
    # chatter (open_clip logs to the root logger) at WARNING. Lines as text or JSON (FASHION_LOG_FORMAT).
    from service.log_format import configure_logging

    configure_logging(_log_format(), stream=sys.stderr)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    app()


def _log_format() -> Literal["text", "json"]:
    """FASHION_LOG_FORMAT, read before any command runs; "text" when the settings do not parse (the command
    then fails with the one-line reason)."""
    from pydantic import ValidationError

    from search.settings import Settings

    try:
        return Settings().log_format
    except ValidationError:
        return "text"


if __name__ == "__main__":
    main()
