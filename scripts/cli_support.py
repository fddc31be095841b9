"""What the `fashion-search` commands share: settings and log levels, one-line failures, JSON summaries,
and the options of the index commands (names and flags are a contract with scripts and monitoring)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer.feed import FEED_FORMATS

ROLLBACK_HELP = (
    "Every build and change publishes a new build behind the index link; the newest --keep stay under "
    "LINK.builds/. Rollback: point the link at an older one, e.g. "
    '`ln -sfn "$PWD/var/index.builds/<build-id>" var/index` (a relative target is read from the '
    "link's folder); a running service picks it up by itself within FASHION_RELOAD_POLL_S (default 2 s; "
    "with 0, POST /v1/admin/reload or a restart), and refuses a build that fails its checks, serving on."
)
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
# Feed images given as http(s) links are downloaded (before the guards and the models) into this cache.
DownloadCache = Annotated[
    Path | None,
    typer.Option(
        help="cache of the feed's downloaded image links, revalidated with ETag / Last-Modified and shared "
        "by builds and syncs (default: INDEX.cache/images beside the index link, e.g. var/index.cache/images)"
    ),
]


def download_options(index: Path, cache: Path | None, progress: bool) -> Any:
    from indexer.image_download import DownloadOptions
    from indexer.sync import default_download_cache

    return DownloadOptions(cache_dir=cache or default_download_cache(index), progress=progress)


def download_stats(stats: Any) -> dict[str, Any]:
    return dataclasses.asdict(stats)


def load_settings(models: bool = True, **overrides: Any) -> Any:
    """Settings from the environment, our log level and the thread counts. `models=False` for commands that
    open only the store (info, verify): FAISS threads, without importing the model code (torch, torchvision:
    most of ten seconds)."""
    from pydantic import ValidationError

    from search.settings import Settings

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"bad setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}", code=2)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)
    if models:
        from search.runtime import apply_threads

        apply_threads(settings)
    else:
        import faiss

        faiss.omp_set_num_threads(settings.faiss_threads)
    return settings


def echo_json(summary: dict[str, Any]) -> None:
    typer.echo(json.dumps(summary, indent=2, sort_keys=True))


def skipped_rows(bad_rows: list[Any]) -> list[dict[str, Any]]:
    return [{"line": row.line, "id": row.item_id, "reason": row.reason} for row in bad_rows]


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run_command(action: Callable[[], None]) -> None:
    """Run a command body; expected failures end with one line and a non-zero exit."""
    from models.errors import FashionSearchError

    try:
        action()
    except FashionSearchError as exc:
        fail(str(exc))
    except OSError as exc:  # a file or folder the command cannot read or write
        where = f": {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        fail("interrupted; any previously published index is unchanged", code=130)
