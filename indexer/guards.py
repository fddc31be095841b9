"""The catalogue guards: a feed that looks broken rather than changed (too many bad rows, too many items gone)
is refused before anything is embedded or published, so a truncated or mangled feed never empties a live
catalogue."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from indexer.feed import BadRow, Feed
from indexer.manifest import IndexCorruptError, Manifest
from indexer.publish import BuildError

log = logging.getLogger(__name__)


class GuardOptions(Protocol):
    """What the guards read of `indexer.build.BuildOptions`."""

    @property
    def max_bad_ratio(self) -> float: ...
    @property
    def max_removed_ratio(self) -> float: ...
    @property
    def force(self) -> bool: ...


class CatalogueGuardError(BuildError):
    """A feed that looks broken rather than changed (too many bad rows, too many items gone): refused before
    anything is embedded or published; `force` overrides it."""


def published_count(out_dir: Path) -> int | None:
    """Items in the build `out_dir` links to now; None without one (a first build) or when its manifest
    cannot be read (a damaged build is replaced without the shrink check; it is not serving anyway)."""
    if not out_dir.is_symlink():
        return None
    try:
        return Manifest.read(out_dir.resolve()).count
    except IndexCorruptError as exc:
        log.warning("the published build cannot be read (%s); the removed-items check is skipped", exc)
        return None


def check_catalogue(
    source: str,
    rows: int,
    bad: Sequence[BadRow],
    count: int,
    published: int | None,
    options: GuardOptions,
) -> None:
    """Refuse a change that looks like a broken feed rather than a catalogue change, before it can replace a
    live catalogue (CatalogueGuardError; nothing has been written):
    - more than `options.max_bad_ratio` of the `rows` of `source` are `bad` (rows that failed to parse, and
      unreadable images once embedding found them), on every build, a first one included;
    - the change leaves `count` items where the `published` build (None: a first build, or a change that
      removes nothing) has more than `options.max_removed_ratio` more.
    `options.force` skips both."""
    if options.force:
        return
    if rows and len(bad) / rows > options.max_bad_ratio:
        raise CatalogueGuardError(
            f"refusing to publish: {len(bad)} of {rows} rows of {source} are bad ({len(bad) / rows:.0%}, "
            f"over --max-bad-ratio {options.max_bad_ratio:g}): {bad_sample(bad)}; "
            f"{_unchanged(published)}; fix the feed or pass --force"
        )
    if published and (published - count) / published > options.max_removed_ratio:
        gone = published - count
        raise CatalogueGuardError(
            f"refusing to publish: the new build would have {count} items, {gone} ({gone / published:.0%}) "
            f"fewer than the {published} published (over --max-removed-ratio {options.max_removed_ratio:g}); "
            f"{_unchanged(published)}; check that {source} is complete or pass --force"
        )


def check_feed(
    feed: Feed, later_bad: Sequence[BadRow], count: int, published: int | None, options: GuardOptions
) -> None:
    """The catalogue guards for a build from `feed`; with no valid row at all (even with `force`: an index
    needs an item) the error names the first rows and their reasons."""
    bad = [*feed.bad_rows, *later_bad]
    if count == 0:
        raise BuildError(
            f"no valid items in {feed.path} ({len(bad)} bad row(s)): {bad_sample(bad)}; nothing was published"
        )
    check_catalogue(str(feed.path), len(feed.items) + len(feed.bad_rows), bad, count, published, options)


def bad_sample(bad: Sequence[BadRow], shown: int = 3) -> str:
    """The first `shown` bad rows by line, with their reasons, and how many more."""
    first = sorted(bad, key=lambda row: row.line)[:shown]
    more = f" (and {len(bad) - shown} more)" if len(bad) > shown else ""
    return "; ".join(str(row) for row in first) + more


def _unchanged(published: int | None) -> str:
    kept = "" if published is None else f"; the published build ({published} items) keeps serving"
    return f"nothing was published{kept}"


def category_counts(
    categories: Iterable[tuple[str, str | None]], known: Iterable[str], strict: bool
) -> tuple[dict[str, int], dict[str, int]]:
    """(items per category outside the taxonomy, items per feed category the category head renamed) from
    (category kept, feed category it replaced or None) pairs. Items of an unknown category can never match a
    garment: logged as a warning with counts, a BuildError under `strict`."""
    taxonomy = set(known)
    unknown: Counter[str] = Counter()
    renamed: Counter[str] = Counter()
    for category, feed_category in categories:
        if category not in taxonomy:
            unknown[category] += 1
        if feed_category is not None:
            renamed[feed_category] += 1
    if unknown:
        listed = ", ".join(f"{name!r} ({count})" for name, count in unknown.most_common(5))
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        message = (
            f"{sum(unknown.values())} item(s) have a category outside the taxonomy, which no garment can "
            f"match: {listed}{more}; name them with the taxonomy's categories or synonyms in the feed"
        )
        if strict:
            raise BuildError(f"--strict: {message}; nothing was published")
        log.warning("%s", message)
    if renamed:
        log.info("categories named by the category head: %s", dict(renamed.most_common(10)))
    return dict(unknown.most_common()), dict(renamed.most_common())
