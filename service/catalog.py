"""Admin catalogue changes over HTTP: the same copy-on-write update as `index add|upsert|delete`, then an
immediate reload so the change is visible to the next search. Images are files under the image root
(ops copy them to the shared image store first); a path outside it is refused without naming it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fastapi import FastAPI

from indexer.build import BuildOptions
from indexer.search import OutfitSearcher
from indexer.update import Mode, update_index
from service.errors import InvalidRequestError, redact_paths
from service.reload import reload_index
from service.schemas import CatalogChanged, CatalogItemIn
from service.settings import Settings


def change_catalogue(
    app: FastAPI,
    items: list[CatalogItemIn] | None = None,
    mode: Mode = "add",
    delete_ids: list[str] | None = None,
) -> CatalogChanged:
    settings: Settings = app.state.settings
    searcher: OutfitSearcher = app.state.searcher
    options = BuildOptions(
        progress=False, max_image_pixels=settings.max_image_pixels, milvus_uri=settings.milvus_uri
    )
    with tempfile.TemporaryDirectory(prefix="fashion-admin-") as scratch:
        feed = _write_feed(Path(scratch), items, settings.image_root) if items else None
        report = update_index(
            settings.index_dir, searcher.embedder, searcher.extractor, options, feed, mode, delete_ids or []
        )
    if report.changed:
        reload_index(app)
    return CatalogChanged(
        build=report.build_dir.name,
        changed=report.changed,
        count=report.count,
        added=report.added,
        replaced=report.replaced,
        deleted=report.deleted,
        skipped=[
            redact_paths(f"{row.item_id or f'item #{row.line}'}: {row.reason}") for row in report.bad_rows
        ],
        missing_ids=report.missing_ids,
    )


def _write_feed(scratch: Path, items: list[CatalogItemIn], image_root: Path | None) -> Path:
    if image_root is None:
        raise InvalidRequestError(
            "catalogue changes over HTTP need FASHION_IMAGE_ROOT (where item images live)"
        )
    root = image_root.resolve()
    lines = []
    for item in items:
        image = (root / item.image).resolve()
        if Path(item.image).is_absolute() or not image.is_relative_to(root) or not image.is_file():
            raise InvalidRequestError(
                f"item {item.id!r}: image {item.image!r} is not a file under the image root; nothing changed"
            )
        lines.append(json.dumps({**item.model_dump(exclude_none=True), "image": str(image)}))
    feed = scratch / "changes.jsonl"
    feed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return feed
