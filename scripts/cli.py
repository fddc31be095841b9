"""`fashion-search`: one entry point for ops.
Verbs: index build | add | upsert | delete | verify | info, search, serve.

Names and flags are a contract with scripts and monitoring: keep them stable."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Literal

import typer

from indexer.feed import FEED_FORMATS

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False
)
ROLLBACK_HELP = (
    "Every build and change publishes a new build behind the index link; the newest --keep stay under "
    "LINK.builds/. Rollback: point the link at an older one, e.g. "
    '`ln -sfn "$PWD/var/index.builds/<build-id>" var/index` (a relative target is read from the '
    "link's folder); a running service picks it up by itself within FASHION_RELOAD_POLL_S (default 2 s; "
    "with 0, POST /v1/admin/reload or a restart), and refuses a build that fails its checks, serving on."
)
index_app = typer.Typer(no_args_is_help=True, help=f"Build and inspect catalogue indexes.\n\n{ROLLBACK_HELP}")
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


def _feed_format(value: str) -> str:
    if value not in FEED_FORMATS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(FEED_FORMATS)}")
    return value


FeedFormat = Annotated[
    str,
    typer.Option(
        "--format",
        callback=_feed_format,
        help=f"feed format: {', '.join(FEED_FORMATS)} (auto: from the file's suffix and first bytes)",
    ),
]
# The catalogue guards (issue 19): checked on the parsed feed, before any model loads or anything is embedded.
MaxBadRatio = Annotated[
    float,
    typer.Option(
        min=0.0, max=1.0, help="refuse, publishing nothing, when more than this share of the rows is bad"
    ),
]
MaxRemovedRatio = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="refuse, publishing nothing, when the build would have this share fewer items than now",
    ),
]
Force = Annotated[bool, typer.Option(help="publish even when --max-bad-ratio or --max-removed-ratio refuse")]
Json = Annotated[bool, typer.Option("--json", help="print a JSON summary (counts, skipped rows, timings)")]


def _settings(models: bool = True, **overrides: Any) -> Any:
    """Settings from the environment, our log level and the thread counts. `models=False` for commands that
    open only the store (info, verify): FAISS threads, without importing the model code (torch, torchvision:
    most of ten seconds)."""
    from pydantic import ValidationError

    from search.settings import Settings

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        _fail(f"bad setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}", code=2)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)
    if models:
        from search.runtime import apply_threads

        apply_threads(settings)
    else:
        import faiss

        faiss.omp_set_num_threads(settings.faiss_threads)
    return settings


def _echo_json(summary: dict[str, Any]) -> None:
    typer.echo(json.dumps(summary, indent=2, sort_keys=True))


def _skipped(bad_rows: list[Any]) -> list[dict[str, Any]]:
    return [{"line": row.line, "id": row.item_id, "reason": row.reason} for row in bad_rows]


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


@index_app.command("build", epilog=ROLLBACK_HELP)
def index_build(
    catalog: Annotated[Path, typer.Option(help="catalogue feed (.jsonl, .csv, or see --format)")],
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
    feed_format: FeedFormat = "auto",
    max_bad_ratio: MaxBadRatio = 0.05,
    max_removed_ratio: MaxRemovedRatio = 0.2,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Embed a catalogue feed and publish a FAISS index atomically (the old one serves until then).
    With --ray-address the feed is embedded in resumable shards on Ray; the index is the same.

    Refused, publishing nothing and before any model loads, when more than --max-bad-ratio of the feed's
    rows are bad (a first build too) or when it would replace the published build with more than
    --max-removed-ratio fewer items; --force publishes anyway. A feed with no valid row always fails, with
    the first rows' reasons."""

    def body() -> None:
        from indexer.build import build_index, read_build_feed
        from search.runtime import ModelFactory, build_embedder, build_extractor, build_options

        started = time.perf_counter()
        settings = _settings()
        options = build_options(
            settings,
            strict=strict,
            batch_size=batch_size,
            keep_builds=keep,
            progress=progress,
            index_factory=index_factory,
            max_bad_ratio=max_bad_ratio,
            max_removed_ratio=max_removed_ratio,
            force=force,
        )
        feed = read_build_feed(catalog, out, options, feed_format)  # the cheap checks, before the models
        feed_s = time.perf_counter() - started
        embedder = build_embedder(settings)
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
        models_s = time.perf_counter() - started - feed_s
        report = build_index(catalog, out, embedder, options, extractor, describe=describe, feed=feed)
        m = report.manifest
        if as_json:
            timings = {**report.timings_s, "feed": feed_s, "models": models_s}
            _echo_json(
                {
                    "command": "build",
                    "index": str(out),
                    "build": report.build_dir.name,
                    "count": m.count,
                    "feed_rows": len(feed.items) + len(feed.bad_rows),
                    "skipped": _skipped(report.bad_rows),
                    "model": m.model_name,
                    "items_per_s": round(report.items_per_s, 1),
                    "timings_s": {
                        **{name: round(seconds, 3) for name, seconds in timings.items()},
                        "total": round(time.perf_counter() - started, 3),
                    },
                }
            )
            return
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
    feed_format: str = "auto",
    max_bad_ratio: float | None = None,
    force: bool = False,
    as_json: bool = False,
) -> None:
    def body() -> None:
        from indexer.feed import read_feed
        from indexer.update import update_index
        from search.runtime import ModelFactory, build_options

        started = time.perf_counter()
        settings = _settings()
        parsed = read_feed(feed, feed_format=feed_format) if feed is not None else None
        feed_s = time.perf_counter() - started
        options = build_options(
            settings,
            strict=strict,
            batch_size=batch_size,
            progress=progress,
            max_bad_ratio=max_bad_ratio,
            force=force,
        )
        report = update_index(
            index,
            None,  # the models load only when there are rows to embed: never for a delete
            None,
            options,
            parsed.items if parsed else [],
            mode,
            delete_ids,
            parsed.bad_rows if parsed else [],
            load_models=ModelFactory(settings),
        )
        if as_json:
            _echo_json(
                {
                    "command": "delete" if feed is None else mode,
                    "index": str(index),
                    "build": report.build_dir.name,
                    "changed": report.changed,
                    "count": report.count,
                    "added": report.added,
                    "replaced": report.replaced,
                    "deleted": report.deleted,
                    "skipped": _skipped(report.bad_rows),
                    "missing_ids": report.missing_ids,
                    "timings_s": {
                        "feed": round(feed_s, 3),
                        "update": report.seconds,
                        "total": round(time.perf_counter() - started, 3),
                    },
                }
            )
            return
        for row in report.bad_rows:
            typer.echo(f"warning: skipped {row}", err=True)
        for item_id in report.missing_ids:
            typer.echo(f"warning: id {item_id!r} is not in the index", err=True)
        state = f"-> {report.build_dir.name}" if report.changed else "unchanged"
        typer.echo(f"updated {index} {state}: {report.summary()}")

    _run(body)


@index_app.command("add", epilog=ROLLBACK_HELP)
def index_add(feed: NewFeed, index: IndexLink, strict: AddStrict = False, batch_size: Batch = 64,
              progress: Progress = True, feed_format: FeedFormat = "auto",
              max_bad_ratio: MaxBadRatio = 0.05, force: Force = False,
              as_json: Json = False) -> None:  # fmt: skip
    """Add new items (known ids are skipped: use upsert); publishes a new build atomically. Refused, changing
    nothing and before any model loads, when more than --max-bad-ratio of the rows are bad (known ids do
    not count)."""
    _index_update(
        index, feed, "add", [], strict, batch_size, progress, feed_format, max_bad_ratio, force, as_json
    )


@index_app.command("upsert", epilog=ROLLBACK_HELP)
def index_upsert(feed: ChangedFeed, index: IndexLink, strict: UpsertStrict = False, batch_size: Batch = 64,
                 progress: Progress = True, feed_format: FeedFormat = "auto",
                 max_bad_ratio: MaxBadRatio = 0.05, force: Force = False,
                 as_json: Json = False) -> None:  # fmt: skip
    """Add new items and replace known ones (re-embedded); publishes a new build atomically. Refused, changing
    nothing and before any model loads, when more than --max-bad-ratio of the rows are bad."""
    _index_update(
        index, feed, "upsert", [], strict, batch_size, progress, feed_format, max_bad_ratio, force, as_json
    )


@index_app.command("delete", epilog=ROLLBACK_HELP)
def index_delete(
    ids: Annotated[list[str], typer.Argument(help="catalogue ids to remove")],
    index: Annotated[Path, typer.Option(help="published index link")],
    strict: Annotated[bool, typer.Option(help="fail, changing nothing, if an id is unknown")] = False,
    as_json: Json = False,
) -> None:
    """Remove items (sold out for good, withdrawn); publishes a new build atomically. Loads no model."""
    _index_update(index, None, "add", ids, strict, 64, False, as_json=as_json)


@index_app.command("verify")
def index_verify(
    index: Annotated[Path, typer.Option(help="index link or build directory")],
    sample: Annotated[int, typer.Option(min=1, help="catalogue vectors used as queries")] = 200,
    k: Annotated[int, typer.Option(min=1, max=1000)] = 10,
) -> None:
    """Check the checksums and print recall@k of the index against exact search, as JSON. Loads no model."""

    def body() -> None:
        from indexer.verify import verify_index

        settings = _settings(models=False)
        typer.echo(json.dumps(verify_index(index, sample, k, milvus_uri=settings.milvus_uri), indent=2))

    _run(body)


@index_app.command("info")
def index_info(
    directory: Annotated[Path, typer.Argument(help="index link or build directory")],
    as_json: Annotated[bool, typer.Option("--json/--no-json", help="JSON, or one line")] = True,
) -> None:
    """Print the manifest and checked counts as JSON (--no-json: one line). Loads no model."""

    def body() -> None:
        from indexer.store import IndexStore

        store = IndexStore.open(directory, _settings(models=False).milvus_uri)
        try:
            info = {
                "path": str(directory.resolve()),
                "manifest": dataclasses.asdict(store.manifest),
                "count": store.count,
                "categories": store.category_counts(),
            }
        finally:
            store.close()
        if as_json:
            _echo_json(info)
            return
        m = store.manifest
        typer.echo(
            f"{directory} -> {store.build_dir.name}: {store.count} items, {m.skipped_rows} skipped, model "
            f"{m.model_name} ({m.dimension}), {m.index_type} in {m.vector_store}, built {m.created_at}"
        )

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
