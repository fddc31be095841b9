"""Incremental sync against a full rebuild (issue 19): a catalogue of `--items` products is built once with
the configured (shipped) model; then, `--passes` times, 1% more of its rows change (half the titles, half
the images: new bytes) and the changed feed is applied both ways in the same process with the models
loaded once: `index sync` onto the live index and a full `index build` of the same feed into another one.

    python -m benchmarks.sync [--items 10000] [--data ../shared/data/clothing] [--passes 3]
        [--changed-share 0.01] [--out benchmarks/results/sync.json]

Images: with --data, the clothing data set's photos (images.csv labels as categories; reused in turn when
there are more items than photos), else generated product shots (scripts/demo_catalog.py). A changed image
is its photo mirrored and re-encoded. Reported: medians of the sync and rebuild wall times and their ratio,
the sync's own stages, and the image vectors each sync embedded, which must equal its changed-image rows.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from benchmarks.arguments import argument_parser
from benchmarks.machine import machine_info
from indexer.build import BuildOptions, build_index
from indexer.image_download import DownloadOptions
from indexer.sync import default_download_cache, sync_index
from models.attributes.extractor import AttributeExtractor
from models.embedding import Embedder
from scripts.demo_catalog import generate_catalog
from search.runtime import apply_threads, build_embedder, build_extractor, build_options
from search.settings import Settings

SKIPPED_LABELS = {"Not sure", "Skip", "Other"}


def data_feed(clothing: Path, items: int, root: Path) -> Path:
    """A feed of `items` rows over the clothing photos (each photo used in turn), by absolute path."""
    clothing = clothing.resolve()
    with (clothing / "images.csv").open(encoding="utf-8", newline="") as handle:
        photos = [
            (clothing / "images" / f"{row['image']}.jpg", row["label"])
            for row in csv.DictReader(handle)
            if row["label"] not in SKIPPED_LABELS
        ]
    photos = sorted((path, label) for path, label in photos if path.is_file())
    if not photos:
        raise SystemExit(f"sync: no photos under {clothing / 'images'} (pass --data ../shared/data/clothing)")
    rows = []
    for index in range(items):
        path, label = photos[index % len(photos)]
        rows.append({"id": f"item-{index:05d}", "image": str(path), "title": f"{label} {index}",
                     "category": label, "price": 10.0 + index % 90, "currency": "EUR"})  # fmt: skip
    return write_feed(root / "catalog.jsonl", rows)


def write_feed(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def change_rows(rows: list[dict[str, Any]], picked: list[int], feed: Path, tag: str) -> tuple[int, int]:
    """Change the `picked` rows in place: the first half's titles, the second half's images (mirrored,
    saved beside the feed). Returns (title changes, image changes)."""
    titles, images = picked[: len(picked) // 2], picked[len(picked) // 2 :]
    for index in titles:
        rows[index]["title"] += f" ({tag})"
    changed = feed.parent / "changed"
    changed.mkdir(exist_ok=True)
    for index in images:
        source = Path(rows[index]["image"])
        source = source if source.is_absolute() else feed.parent / source
        target = changed / f"{rows[index]['id']}-{tag}.jpg"
        with Image.open(source) as image:
            ImageOps.mirror(image.convert("RGB")).save(target, "JPEG", quality=88)
        rows[index]["image"] = str(target)
    write_feed(feed, rows)
    return len(titles), len(images)


def main() -> None:
    parser = argument_parser(__doc__, "benchmarks/results/sync.json", threads=None)
    parser.add_argument("--items", type=int, default=10_000, help="catalogue rows")
    parser.add_argument("--data", type=Path, help="clothing photos, e.g. ../shared/data/clothing")
    parser.add_argument("--passes", type=int, default=3, help="change sets, each synced and rebuilt")
    parser.add_argument("--changed-share", type=float, default=0.01, help="rows changed per pass")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    changes = max(2, round(args.items * args.changed_share))
    if changes * args.passes > args.items:
        raise SystemExit(
            f"sync: {args.passes} passes of {changes} changed rows need more rows than {args.items}"
        )
    settings = Settings()
    apply_threads(settings)
    started = time.perf_counter()
    embedder = build_embedder(settings)
    extractor = build_extractor(settings, embedder)
    models_s = time.perf_counter() - started
    options = build_options(settings, progress=False, keep_builds=2)

    with tempfile.TemporaryDirectory(prefix="fashion-sync-") as tmp:
        root = Path(tmp)
        if args.data is not None:
            feed, source = (
                data_feed(args.data, args.items, root / "catalog"),
                f"clothing photos ({args.data})",
            )
        else:
            feed, source = generate_catalog(root / "catalog", args.items, n_scenes=0).feed, "generated"
        rows = [json.loads(line) for line in feed.read_text(encoding="utf-8").splitlines() if line]
        live, rebuilt = root / "live", root / "rebuilt"
        print(f"[sync] building {args.items} items with {embedder.name} ...", flush=True)
        first = build_index(feed, live, embedder, options, extractor)
        picked = random.Random(0).sample(range(len(rows)), changes * args.passes)
        passes = []
        for number in range(args.passes):
            chosen = picked[number * changes : (number + 1) * changes]
            titles, images = change_rows(rows, chosen, feed, f"pass {number + 1}")
            run = one_pass(feed, live, rebuilt, embedder, extractor, options, titles, images)
            passes.append(run)
            print(
                f"[sync] pass {number + 1}/{args.passes}: sync {run['sync_s']} s, "
                f"rebuild {run['rebuild_s']} s, {run['embedded']} embedded",
                flush=True,
            )

    sync_s = statistics.median(run["sync_s"] for run in passes)
    rebuild_s = statistics.median(run["rebuild_s"] for run in passes)
    stages = passes[0]["sync_timings_s"]
    report = {
        "benchmark": "sync",
        "machine": machine_info(),
        "model": embedder.name,
        "threads": {"torch": settings.torch_threads, "faiss": settings.faiss_threads},
        "catalogue": {
            "items": args.items,
            "images": source,
            "changed_rows_per_pass": changes,
            "changed_titles_per_pass": changes // 2,
            "changed_images_per_pass": changes - changes // 2,
        },
        "models_load_s": round(models_s, 2),
        "initial_build_s": round(first.timings_s["total"], 2),
        "sync_s_median": round(sync_s, 3),
        "rebuild_s_median": round(rebuild_s, 3),
        "rebuild_over_sync": round(rebuild_s / sync_s, 1) if sync_s else None,
        "sync_stages_s_median": {
            name: round(statistics.median(run["sync_timings_s"][name] for run in passes), 3)
            for name in stages
        },
        "embedded_equals_changed_images": all(run["embedded"] == run["changed_images"] for run in passes),
        "passes": passes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    same = report["embedded_equals_changed_images"]
    print(
        f"[sync] sync {sync_s:.2f} s, rebuild {rebuild_s:.2f} s (x{report['rebuild_over_sync']}); "
        f"embedded = changed images: {same}; written to {args.out}",
        flush=True,
    )


def one_pass(
    feed: Path,
    live: Path,
    rebuilt: Path,
    embedder: Embedder,
    extractor: AttributeExtractor,
    options: BuildOptions,
    titles: int,
    images: int,
) -> dict[str, Any]:
    """The changed feed applied by a sync onto `live`, then by a full build into `rebuilt`."""
    download = DownloadOptions(cache_dir=default_download_cache(live), progress=False)
    started = time.perf_counter()
    report = sync_index(feed, live, options, lambda: (embedder, extractor), download)
    sync_s = time.perf_counter() - started
    started = time.perf_counter()
    build_index(feed, rebuilt, embedder, options, extractor)
    rebuild_s = time.perf_counter() - started
    return {
        "changed_titles": titles,
        "changed_images": images,
        "plan": report.plan.counts(),
        "embedded": report.embedded,
        "sync_s": round(sync_s, 3),
        "sync_timings_s": report.timings_s,
        "rebuild_s": round(rebuild_s, 3),
        "count": report.count,
    }


if __name__ == "__main__":
    main()
