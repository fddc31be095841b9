"""`fashion-search index ...`: build, add, upsert, delete, sync, verify and inspect catalogue indexes."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from scripts.cli_support import (
    ROLLBACK_HELP,
    AddStrict,
    Batch,
    ChangedFeed,
    DownloadCache,
    FeedFormat,
    Force,
    IndexLink,
    Json,
    MaxBadRatio,
    MaxRemovedRatio,
    NewFeed,
    Progress,
    UpsertStrict,
    download_options,
    download_stats,
    echo_json,
    load_settings,
    run_command,
    skipped_rows,
)

index_app = typer.Typer(no_args_is_help=True, help=f"Build and inspect catalogue indexes.\n\n{ROLLBACK_HELP}")


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
    download_cache: DownloadCache = None,
) -> None:
    """Embed a catalogue feed and publish a FAISS index atomically (the old one serves until then).
    With --ray-address the feed is embedded in resumable shards on Ray; the index is the same.

    Image links (http/https) are downloaded first, into --download-cache; a failed download is a bad row.
    Refused, publishing nothing and before any model loads, when more than --max-bad-ratio of the feed's
    rows are bad (a first build too) or when it would replace the published build with more than
    --max-removed-ratio fewer items; --force publishes anyway. A feed with no valid row always fails, with
    the first rows' reasons."""

    def body() -> None:
        from indexer.build import build_index
        from indexer.sync import read_localised_feed
        from search.runtime import ModelFactory, build_embedder, build_extractor, build_options

        started = time.perf_counter()
        settings = load_settings()
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
        download = download_options(out, download_cache, progress)
        # The cheap checks, then the downloads, then the guards again: all before the models.
        feed, downloads = read_localised_feed(catalog, out, options, download, feed_format)
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
            timings = {**report.timings_s, "feed": feed_s, "download": downloads.seconds, "models": models_s}
            echo_json(
                {
                    "command": "build",
                    "index": str(out),
                    "build": report.build_dir.name,
                    "count": m.count,
                    "vectors": m.vector_count,
                    "unknown_categories": report.unknown_categories,
                    "renamed_categories": report.renamed_categories,
                    "feed_rows": len(feed.items) + len(feed.bad_rows),
                    "skipped": skipped_rows(report.bad_rows),
                    "downloads": download_stats(downloads),
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

    run_command(body)


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
    download_cache: Path | None = None,
) -> None:
    def body() -> None:
        from indexer.feed import read_feed
        from indexer.image_download import DownloadStats
        from indexer.sync import localise_feed
        from indexer.update import update_index
        from search.runtime import ModelFactory, build_options

        started = time.perf_counter()
        settings = load_settings()
        parsed = read_feed(feed, feed_format=feed_format) if feed is not None else None
        feed_s = time.perf_counter() - started
        downloads = DownloadStats()
        if parsed is not None:  # image links downloaded before the guards and the models
            parsed, downloads = localise_feed(parsed, download_options(index, download_cache, progress))
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
            echo_json(
                {
                    "command": "delete" if feed is None else mode,
                    "index": str(index),
                    "build": report.build_dir.name,
                    "changed": report.changed,
                    "count": report.count,
                    "added": report.added,
                    "replaced": report.replaced,
                    "deleted": report.deleted,
                    "skipped": skipped_rows(report.bad_rows),
                    "missing_ids": report.missing_ids,
                    "embedded": report.embedded,
                    "downloads": download_stats(downloads),
                    "timings_s": {
                        "feed": round(feed_s, 3),
                        "download": round(downloads.seconds, 3),
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

    run_command(body)


@index_app.command("add", epilog=ROLLBACK_HELP)
def index_add(feed: NewFeed, index: IndexLink, strict: AddStrict = False, batch_size: Batch = 64,
              progress: Progress = True, feed_format: FeedFormat = "auto",
              max_bad_ratio: MaxBadRatio = 0.05, force: Force = False,
              as_json: Json = False, download_cache: DownloadCache = None) -> None:  # fmt: skip
    """Add new items (known ids are skipped: use upsert); publishes a new build atomically. Image links are
    downloaded first (a failed one is a bad row). Refused, changing nothing and before any model loads, when
    more than --max-bad-ratio of the rows are bad (known ids do not count)."""
    _index_update(index, feed, "add", [], strict, batch_size, progress, feed_format, max_bad_ratio, force,
                  as_json, download_cache)  # fmt: skip


@index_app.command("upsert", epilog=ROLLBACK_HELP)
def index_upsert(feed: ChangedFeed, index: IndexLink, strict: UpsertStrict = False, batch_size: Batch = 64,
                 progress: Progress = True, feed_format: FeedFormat = "auto",
                 max_bad_ratio: MaxBadRatio = 0.05, force: Force = False,
                 as_json: Json = False, download_cache: DownloadCache = None) -> None:  # fmt: skip
    """Add new items and replace known ones (re-embedded unless their image bytes, category and feed
    attributes are unchanged); publishes a new build atomically. Image links are downloaded first (a failed
    one is a bad row). Refused, changing nothing and before any model loads, when more than --max-bad-ratio
    of the rows are bad."""
    _index_update(index, feed, "upsert", [], strict, batch_size, progress, feed_format, max_bad_ratio, force,
                  as_json, download_cache)  # fmt: skip


@index_app.command("delete", epilog=ROLLBACK_HELP)
def index_delete(
    ids: Annotated[list[str], typer.Argument(help="catalogue ids to remove")],
    index: Annotated[Path, typer.Option(help="published index link")],
    strict: Annotated[bool, typer.Option(help="fail, changing nothing, if an id is unknown")] = False,
    as_json: Json = False,
) -> None:
    """Remove items (sold out for good, withdrawn); publishes a new build atomically. Loads no model."""
    _index_update(index, None, "add", ids, strict, 64, False, as_json=as_json)


@index_app.command("sync", epilog=ROLLBACK_HELP)
def index_sync(
    feed: Annotated[Path, typer.Argument(help="the complete catalogue feed (e.g. tonight's export)")],
    index: IndexLink,
    feed_format: FeedFormat = "auto",
    dry_run: Annotated[bool, typer.Option(help="print the plan; publish nothing, load no model")] = False,
    as_json: Json = False,
    max_bad_ratio: MaxBadRatio = 0.05,
    max_removed_ratio: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="refuse, publishing nothing, when more than this share of the items would go",
        ),
    ] = 0.2,
    force: Force = False,
    download_cache: DownloadCache = None,
    strict: UpsertStrict = False,
    batch_size: Batch = 64,
    progress: Progress = True,
) -> None:
    """Make the index match a complete feed, embedding only what changed: new items and items whose image
    bytes changed are embedded; items whose title, price, stock ... changed keep their vectors; items the
    feed no longer has are removed; all in one atomic change (nothing to do: nothing is published). Image
    links are downloaded into --download-cache first and revalidated on later runs.

    Refused, publishing nothing and before any model loads, when more than --max-bad-ratio of the feed's
    rows are bad or more than --max-removed-ratio of the published items would be removed (a truncated
    feed); --force syncs anyway. A published item whose row is bad this time is kept as it is.

    Nightly, e.g.: fashion-search index sync feeds/products.tsv --index var/index --no-progress --json"""

    def body() -> None:
        from indexer.sync import sync_index
        from search.runtime import ModelFactory, build_options

        settings = load_settings(models=not dry_run)  # a dry run sets no torch threads: it embeds nothing
        options = build_options(
            settings,
            strict=strict,
            batch_size=batch_size,
            progress=progress,
            max_bad_ratio=max_bad_ratio,
            max_removed_ratio=max_removed_ratio,
            force=force,
        )
        download = download_options(index, download_cache, progress)
        report = sync_index(
            feed, index, options, ModelFactory(settings), download, feed_format=feed_format, dry_run=dry_run
        )
        if as_json:
            echo_json({"command": "sync", "index": str(index), **report.to_json()})
            return
        for row in report.bad_rows:
            typer.echo(f"warning: skipped {row}", err=True)
        typer.echo(f"synced {index}: {report.summary()} ({report.timings_s['total']:.1f} s)")

    run_command(body)


@index_app.command("verify")
def index_verify(
    index: Annotated[Path, typer.Option(help="index link or build directory")],
    sample: Annotated[int, typer.Option(min=1, help="catalogue vectors used as queries")] = 200,
    k: Annotated[int, typer.Option(min=1, max=1000)] = 10,
) -> None:
    """Check the checksums and print recall@k of the index against exact search, as JSON. Loads no model."""

    def body() -> None:
        from indexer.verify import verify_index

        settings = load_settings(models=False)
        typer.echo(json.dumps(verify_index(index, sample, k, milvus_uri=settings.milvus_uri), indent=2))

    run_command(body)


@index_app.command("info")
def index_info(
    directory: Annotated[Path, typer.Argument(help="index link or build directory")],
    as_json: Annotated[bool, typer.Option("--json/--no-json", help="JSON, or one line")] = True,
) -> None:
    """Print the manifest and checked counts as JSON (--no-json: one line). Loads no model."""

    def body() -> None:
        from indexer.store import IndexStore

        store = IndexStore.open(directory, load_settings(models=False).milvus_uri)
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
            echo_json(info)
            return
        m = store.manifest
        typer.echo(
            f"{directory} -> {store.build_dir.name}: {store.count} items, {m.skipped_rows} skipped, model "
            f"{m.model_name} ({m.dimension}), {m.index_type} in {m.vector_store}, built {m.created_at}"
        )

    run_command(body)
