"""Filtered Milvus search before and after scalar fields (issue 20): a Milvus Lite collection of `--items`
catalogue items (random unit vectors of the embedder's dimension, a fifth of the items with one or two
further images), and filtered queries as the store sends them, one query vector at a time.

- before: the backend as it was at `--before-rev` (read from git), whose collection holds row and vector
  only: every filtered query sends the rows the filter keeps (`row in [...]`, or `row not in [...]` when
  most qualify);
- after: today's backend, whose collection holds the filterable fields (category, brand, price, in_stock,
  gender, one VARCHAR per attribute group, each with an INVERTED index): the filter travels as a Milvus
  expression over them.

Both arms run in the same process against the same Milvus Lite data, taking turns on every query vector, so
their ratio depends little on the machine's speed or on other load. The store's own numpy pass over its
filter columns (the same in both arms) is not timed.

    python -m benchmarks.milvus_filters [--items 40000] [--queries 60] [--before-rev 3f1c207]
        [--arms before after] [--out benchmarks/results/milvus_filters.json]

Catalogue: categories, brands (a long tail), prices (log-normal, some unknown), stock, gender and
attributes drawn with skewed weights, as a fashion shop's feed looks. Each case records the share of its
items that qualify, the median and p90 latency per arm, and whether the arms returned the same rows.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.arguments import argument_parser
from benchmarks.machine import machine_info
from indexer.filters import FilterColumns, SearchFilters
from indexer.metadata import ImageRow, ItemRecord
from models.attributes.guess import AttributeGuess

log = logging.getLogger(__name__)

BEFORE_REV = "3f1c207"  # the last commit whose Milvus backend filtered by row lists
DIMENSION = 256  # the shipped fashion-net-v3 embedder's
CATEGORIES = {"top": 28, "dress": 12, "trousers": 12, "outerwear": 9, "footwear": 13, "bag": 8, "skirt": 5,
              "shorts": 4, "hat": 3, "scarf": 2, "belt": 2, "eyewear": 2}  # fmt: skip
COLOURS = {"black": 24, "white": 14, "blue": 10, "grey": 8, "navy": 7, "beige": 6, "red": 5, "green": 4,
           "brown": 4, "pink": 4, "cream": 3, "khaki": 3, "burgundy": 2, "yellow": 2, "olive": 2,
           "orange": 1, "teal": 1, "light blue": 1, "purple": 1, "lilac": 1}  # fmt: skip
PATTERNS = {"solid": 60, "striped": 10, "floral": 8, "checked": 6, "graphic": 6, "dotted": 4, "animal": 3,
            "geometric": 3}  # fmt: skip
MATERIALS = {"cotton": 30, "polyester": 15, "denim": 10, "wool": 8, "leather": 8, "viscose": 7, "linen": 6,
             "knit": 6, "silk": 4, "cashmere": 2, "suede": 2, "velvet": 2}  # fmt: skip
GENDERS = {"women": 55, "men": 32, "unisex": 13}
BRANDS = 400  # brand i has weight 1 / (i + 1): a few big labels and a long tail


def _pick(rng: np.random.Generator, weights: dict[str, int], size: int) -> list[str]:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return [names[i] for i in rng.choice(len(names), size=size, p=p / p.sum())]


def synthetic_catalogue(items: int, seed: int) -> tuple[list[ItemRecord], list[ImageRow]]:
    """`items` records (rows 0..items-1) and the further images of a fifth of them (rows items..)."""
    rng = np.random.default_rng(seed)
    categories = _pick(rng, CATEGORIES, items)
    brand_weights = {f"brand-{i:03d}": 1_000_000 // (i + 1) for i in range(BRANDS)}
    brands = _pick(rng, brand_weights, items)
    prices = np.round(np.exp(rng.normal(3.8, 0.7, items)), 2)  # median about 45, most within 10..200
    unknown_price = rng.random(items) < 0.03
    in_stock = rng.random(items) < 0.85
    columns = {"colour": _pick(rng, COLOURS, items), "pattern": _pick(rng, PATTERNS, items),
               "material": _pick(rng, MATERIALS, items), "gender": _pick(rng, GENDERS, items)}  # fmt: skip
    known = {group: rng.random(items) < share for group, share in
             (("colour", 0.97), ("pattern", 0.9), ("material", 0.75), ("gender", 0.95))}  # fmt: skip
    records = []
    for row in range(items):
        attributes = {
            group: AttributeGuess(values[row], 0.9, "predicted")
            for group, values in columns.items()
            if known[group][row]
        }
        records.append(
            ItemRecord(
                row=row,
                item_id=f"item-{row:06d}",
                title=f"{categories[row]} {row}",
                category=categories[row],
                brand=brands[row].upper() if row % 7 == 0 else brands[row],  # feeds mix the case
                price=None if unknown_price[row] else float(prices[row]),
                currency="EUR",
                in_stock=bool(in_stock[row]),
                url=f"https://shop.example/p/{row}",
                attributes=attributes,
            )
        )
    extra = rng.choice([0, 1, 2], size=items, p=[0.8, 0.12, 0.08])
    image_rows = [
        ImageRow(items + i, item_row, position)
        for i, (item_row, position) in enumerate(
            (item_row, position)
            for item_row in range(items)
            for position in range(1, int(extra[item_row]) + 1)
        )
    ]
    return records, image_rows


def cases() -> dict[str, SearchFilters]:
    """Filtered queries from broad (a quarter of the catalogue) to selective (well under 1%)."""
    return {
        "category_broad": SearchFilters(categories=frozenset({"top"})),
        "category_selective": SearchFilters(categories=frozenset({"belt"})),
        "category_price_band": SearchFilters(categories=frozenset({"dress"}), price_min=40.0, price_max=80.0),
        "attribute_broad": SearchFilters(attributes={"colour": frozenset({"black"})}),
        "attribute_selective": SearchFilters(
            categories=frozenset({"outerwear"}),
            gender="women",
            attributes={"material": frozenset({"cashmere", "wool"}), "colour": frozenset({"brown", "beige"})},
        ),
        "gender_pattern": SearchFilters(
            gender="men", attributes={"pattern": frozenset({"striped", "checked"})}
        ),
        "brand_in_stock": SearchFilters(brands=frozenset({"brand-002", "brand-017"}), in_stock=True),
        "most_rows": SearchFilters(in_stock=True),
    }


def before_module(rev: str) -> ModuleType:
    """indexer/milvus_backend.py as it was at `rev`, imported under another name."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:indexer/milvus_backend.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    name = "benchmarks._milvus_backend_before"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(source, f"{rev}:indexer/milvus_backend.py", "exec"), module.__dict__)  # noqa: S102
    return module


def vector_rows(columns: FilterColumns, row_item: np.ndarray, filters: SearchFilters) -> np.ndarray:
    """The vector rows the store passes for `filters`: every image of each item they keep."""
    keep = np.zeros(columns.size, dtype=bool)
    keep[columns.rows(filters)] = True
    return np.flatnonzero(keep[row_item]).astype(np.int64)


def time_arms(
    backends: dict[str, Any],
    queries: np.ndarray,
    k: int,
    rows: np.ndarray,
    filters: SearchFilters,
    warmup: int,
) -> tuple[dict[str, list[float]], dict[str, list[np.ndarray]]]:
    """Milliseconds per single-vector search for each arm, and the rows each found. The arms take turns on
    every query vector (in alternating order), so load from other processes falls on both alike; warm-up
    queries are not timed. Only the "after" arm is given the filters: "before" has the rows alone."""
    times: dict[str, list[float]] = {arm: [] for arm in backends}
    found: dict[str, list[np.ndarray]] = {arm: [] for arm in backends}
    order = list(backends)
    for i, query in enumerate([*queries[:warmup], *queries]):
        for arm in order if i % 2 else order[::-1]:
            extra = {"filters": filters} if arm == "after" else {}
            started = time.perf_counter()
            _, got = backends[arm].search(query[None, :], k, rows, **extra)
            if i >= warmup:
                times[arm].append((time.perf_counter() - started) * 1000)
                found[arm].append(got[0])
    return times, found


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
    }


def open_arm(module: ModuleType, uri: str, name: str, vectors: np.ndarray, fields: Any) -> tuple[Any, float]:
    index_type = module.choose_index_type(len(vectors))
    started = time.perf_counter()
    if fields is None:
        module.write_collection(uri, name, vectors, index_type)
    else:
        module.write_collection(uri, name, vectors, index_type, fields)
    written = time.perf_counter() - started
    return module.MilvusBackend.open(uri, name, index_type), written


def main() -> None:
    parser = argument_parser(__doc__, "benchmarks/results/milvus_filters.json", threads=None)
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--queries", type=int, default=60, help="timed query vectors per case and arm")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pool", type=int, default=100, help="items asked for (the searcher's pool)")
    parser.add_argument("--before-rev", default=BEFORE_REV, help="git revision of the 'before' backend")
    parser.add_argument("--arms", nargs="+", choices=("before", "after"), default=["before", "after"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    records, image_rows = synthetic_catalogue(args.items, args.seed)
    count = len(records) + len(image_rows)
    rng = np.random.default_rng(args.seed + 1)
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, DIMENSION)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    columns = FilterColumns(records)
    row_item = np.concatenate([np.arange(len(records)), [r.item_row for r in image_rows]]).astype(np.int64)
    most_images = int(np.bincount(row_item).max())

    from indexer import milvus_backend

    arms: dict[str, tuple[ModuleType, Any]] = {}
    if "before" in args.arms:
        arms["before"] = (before_module(args.before_rev), None)
    if "after" in args.arms:
        from indexer.milvus_fields import ScalarFields

        arms["after"] = (milvus_backend, ScalarFields.of(records, image_rows))
    results: dict[str, dict[str, Any]] = {name: {} for name in cases()}
    writes: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="milvus-filters-") as tmp:
        uri = str(Path(tmp) / "milvus.db")
        backends = {}
        for arm, (module, fields) in arms.items():
            backends[arm], writes[arm] = open_arm(module, uri, f"bench_{arm}", vectors, fields)
            log.info("%s: wrote %d vectors in %.1f s", arm, count, writes[arm])
        try:
            for name, filters in cases().items():
                rows = vector_rows(columns, row_item, filters)
                k = min(args.pool * most_images, len(rows))
                entry: dict[str, Any] = {"qualifying_rows": len(rows), "share": round(len(rows) / count, 4)}
                times, found = time_arms(backends, queries, k, rows, filters, args.warmup)
                for arm in backends:
                    entry[arm] = summary(times[arm])
                    log.info("%s %s: %s", name, arm, entry[arm])
                if len(backends) == 2:
                    entry["before_over_after"] = round(
                        entry["before"]["median_ms"] / entry["after"]["median_ms"], 2
                    )
                    entry["same_rows"] = all(
                        np.array_equal(a, b) for a, b in zip(found["before"], found["after"], strict=True)
                    )
                results[name] = entry
        finally:
            for backend in backends.values():
                backend.close()

    versions = {package: _version(package) for package in ("pymilvus", "milvus-lite")}
    report = {
        "benchmark": "milvus_filters",
        "machine": {**machine_info(), "milvus_versions": versions},
        "catalogue": {
            "items": len(records),
            "vector_rows": count,
            "dimension": DIMENSION,
            "index_type": milvus_backend.choose_index_type(count),
            "most_images_per_item": most_images,
        },
        "query": {
            "k": f"min(pool {args.pool} x {most_images} images, qualifying rows)",
            "vectors": args.queries,
        },
        "before_rev": args.before_rev,
        "write_s": {arm: round(seconds, 2) for arm, seconds in writes.items()},
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
