"""`fashion-search`: one entry point for ops.
Verbs: index build | add | upsert | delete | verify | info, search, serve.

Names and flags are a contract with scripts and monitoring: keep them stable."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Literal

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False
)
index_app = typer.Typer(no_args_is_help=True, help="Build and inspect catalogue indexes.")
app.add_typer(index_app, name="index")
OUR_LOGGERS = ("models", "indexer", "search", "service", "scripts", "uvicorn")
# Options shared by the `index add` and `index upsert` commands.
NewFeed = Annotated[Path, typer.Argument(help="feed of new items (.jsonl or .csv)")]
ChangedFeed = Annotated[Path, typer.Argument(help="feed of new or changed items")]
IndexLink = Annotated[Path, typer.Option(help="published index link")]
AddStrict = Annotated[bool, typer.Option(help="fail, changing nothing, on any bad row or known id")]
UpsertStrict = Annotated[bool, typer.Option(help="fail, changing nothing, on any bad row")]
Batch = Annotated[int, typer.Option(min=1)]
Progress = Annotated[bool, typer.Option(help="show a progress bar")]


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from search.runtime import apply_threads
    from search.settings import Settings

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        _fail(f"bad setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}", code=2)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)
    apply_threads(settings)
    return settings


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _run(action: Callable[[], None]) -> None:
    """Run a command body; expected failures end with one line and a non-zero exit."""
    from models.errors import FashionSearchError

    try:
        action()
    except FashionSearchError as exc:
        _fail(str(exc))
    except OSError as exc:  # a file or folder the command cannot read or write
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        _fail("interrupted; any previously published index is unchanged", code=130)


@index_app.command("build")
def index_build(
    catalog: Annotated[Path, typer.Option(help="catalogue feed (.jsonl or .csv)")],
    out: Annotated[Path, typer.Option(help="index link to publish (e.g. var/index)")],
    strict: Annotated[bool, typer.Option(help="fail the build on any bad row")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="images per embedding batch")] = 64,
    keep: Annotated[int, typer.Option(min=1, help="complete builds to keep for rollback")] = 3,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    index_factory: Annotated[
        str | None, typer.Option(help='FAISS factory, e.g. "HNSW32,Flat" (default: chosen by size)')
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="embed on Ray: 'local', 'auto' or a cluster address (ray://host:10001)")
    ] = None,
    shards: Annotated[
        int | None, typer.Option(min=1, help="Ray: number of shards (keep it to resume)")
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="Ray: finished shards, for resuming (default OUT.shards)")
    ] = None,
    num_cpus: Annotated[int | None, typer.Option(min=1, help="Ray: CPUs of a local Ray")] = None,
) -> None:
    """Embed a catalogue feed and publish a FAISS index atomically (the old one serves until then).
    With --ray-address the feed is embedded in resumable shards on Ray; the index is the same."""

    def body() -> None:
        from indexer.build import build_index
        from search.runtime import ModelFactory, build_embedder, build_extractor, build_options

        settings = _settings()
        embedder = build_embedder(settings)
        options = build_options(
            settings,
            strict=strict,
            batch_size=batch_size,
            keep_builds=keep,
            progress=progress,
            index_factory=index_factory,
        )
        describe = None
        if ray_address is not None or shards is not None:
            from indexer.distributed import distributed_describer

            describe = distributed_describer(
                ModelFactory(settings),
                options,
                work_dir or out.with_name(f"{out.name}.shards"),
                address=None if ray_address in (None, "local") else ray_address,
                shards=shards,
                num_cpus=num_cpus,
                expected_model=embedder.name,
            )
        extractor = build_extractor(settings, embedder)
        report = build_index(catalog, out, embedder, options, extractor, describe=describe)
        m = report.manifest
        typer.echo(
            f"built {out} -> {report.build_dir.name}: {m.count} items, {len(report.bad_rows)} skipped, "
            f"{m.build_seconds:.1f} s ({report.items_per_s:.1f} items/s), model {m.model_name}"
        )

    _run(body)


def _index_update(
    index: Path,
    feed: Path | None,
    mode: Literal["add", "upsert"],
    delete_ids: list[str],
    strict: bool,
    batch_size: int,
    progress: bool,
) -> None:
    def body() -> None:
        from indexer.feed import read_feed
        from indexer.update import update_index
        from search.runtime import build_embedder, build_extractor, build_options

        settings = _settings()
        embedder = build_embedder(settings)
        parsed = read_feed(feed) if feed is not None else None
        report = update_index(
            index,
            embedder,
            build_extractor(settings, embedder),
            build_options(settings, strict=strict, batch_size=batch_size, progress=progress),
            parsed.items if parsed else [],
            mode,
            delete_ids,
            parsed.bad_rows if parsed else [],
        )
        for row in report.bad_rows:
            typer.echo(f"warning: skipped {row}", err=True)
        for item_id in report.missing_ids:
            typer.echo(f"warning: id {item_id!r} is not in the index", err=True)
        state = f"-> {report.build_dir.name}" if report.changed else "unchanged"
        typer.echo(f"updated {index} {state}: {report.summary()}")

    _run(body)


@index_app.command("add")
def index_add(feed: NewFeed, index: IndexLink, strict: AddStrict = False, batch_size: Batch = 64,
              progress: Progress = True) -> None:  # fmt: skip
    """Add new items (known ids are skipped: use upsert); publishes a new build atomically."""
    _index_update(index, feed, "add", [], strict, batch_size, progress)


@index_app.command("upsert")
def index_upsert(feed: ChangedFeed, index: IndexLink, strict: UpsertStrict = False, batch_size: Batch = 64,
                 progress: Progress = True) -> None:  # fmt: skip
    """Add new items and replace known ones (re-embedded); publishes a new build atomically."""
    _index_update(index, feed, "upsert", [], strict, batch_size, progress)


@index_app.command("delete")
def index_delete(
    ids: Annotated[list[str], typer.Argument(help="catalogue ids to remove")],
    index: Annotated[Path, typer.Option(help="published index link")],
    strict: Annotated[bool, typer.Option(help="fail, changing nothing, if an id is unknown")] = False,
) -> None:
    """Remove items (sold out for good, withdrawn); publishes a new build atomically."""
    _index_update(index, None, "add", ids, strict, 64, False)


@index_app.command("verify")
def index_verify(
    index: Annotated[Path, typer.Option(help="index link or build directory")],
    sample: Annotated[int, typer.Option(min=1, help="catalogue vectors used as queries")] = 200,
    k: Annotated[int, typer.Option(min=1, max=1000)] = 10,
) -> None:
    """Check the checksums and print recall@k of the index against exact search, as JSON."""

    def body() -> None:
        from indexer.verify import verify_index

        typer.echo(json.dumps(verify_index(index, sample, k, milvus_uri=_settings().milvus_uri), indent=2))

    _run(body)


@index_app.command("info")
def index_info(directory: Annotated[Path, typer.Argument(help="index link or build directory")]) -> None:
    """Print the manifest and checked counts as JSON."""

    def body() -> None:
        from indexer.store import IndexStore

        store = IndexStore.open(directory, _settings().milvus_uri)
        try:
            info = {
                "path": str(directory.resolve()),
                "manifest": dataclasses.asdict(store.manifest),
                "count": store.count,
                "categories": store.category_counts(),
            }
        finally:
            store.close()
        typer.echo(json.dumps(info, indent=2, sort_keys=True))

    _run(body)


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
    profile: Annotated[str | None, typer.Option(help='JSON, e.g. {"brands": ["acme"]}')] = None,
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

        settings = _settings(index_dir=index)
        if not image.is_file():
            _fail(f"image {image} does not exist")
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

    _run(body)


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

        settings = _settings(index_dir=index, host=host, port=port)
        app = StartupGuard(create_app(settings))
        signal.signal(signal.SIGTERM, _exit_cleanly)
        try:
            uvicorn.run(app, **uvicorn_options(settings))
        except SystemExit:
            if app.failure is not None:  # uvicorn exits 3 when the lifespan fails; say why in one line
                raise app.failure from None
            raise

    _run(body)


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
    # Our loggers (and uvicorn's) at INFO; third-party chatter (open_clip logs to the root logger) at WARNING.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    app()


if __name__ == "__main__":
    main()
