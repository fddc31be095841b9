"""Admin catalogue changes over HTTP: the same copy-on-write update as `index add|upsert|delete`, then an
immediate reload so the change is visible to the next search. Images are files under the image root
(ops copy them to the shared image store first); a path outside it is refused without naming it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from indexer.feed import CatalogItem, CatalogRow
from indexer.update import Mode, update_index
from models.errors import shown
from search.errors import InvalidRequestError
from search.runtime import build_options
from search.searcher import OutfitSearcher
from search.settings import Settings
from service.errors import redact_paths
from service.reload import reload_index
from service.schemas import CatalogChanged


def change_catalogue(
    app: FastAPI,
    rows: list[CatalogRow] | None = None,
    mode: Mode = "add",
    delete_ids: list[str] | None = None,
) -> CatalogChanged:
    settings: Settings = app.state.settings
    searcher: OutfitSearcher = app.state.searcher
    items = _items_under(rows, settings.image_root) if rows else []
    report = update_index(
        settings.index_dir,
        searcher.embedder,
        searcher.extractor,
        # The caller names each row and gets each bad one back in `skipped`: the bad-row share that refuses a
        # broken feed does not apply to a hand-made change.
        build_options(settings, progress=False, max_bad_ratio=1.0),
        items,
        mode,
        delete_ids or [],
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


def _items_under(rows: list[CatalogRow], image_root: Path | None) -> list[CatalogItem]:
    """The rows as items whose images are files under the image root (line = position in the request)."""
    if image_root is None:
        raise InvalidRequestError(
            "catalogue changes over HTTP need FASHION_IMAGE_ROOT (where item images live)"
        )
    root = image_root.resolve()
    items = []
    for line, row in enumerate(rows, start=1):
        image = _file_under(row.image, root)
        if image is None:
            raise InvalidRequestError(
                f"item {shown(row.id)}: image {shown(row.image)} is not a file under the image root; "
                "nothing changed"
            )
        items.append(row.model_copy(update={"image": str(image)}).to_item(root, line))
    return items


def _file_under(stored: str, root: Path) -> Path | None:
    """The image file `stored` names under `root` (symlinks followed), or None."""
    if Path(stored).is_absolute():
        return None
    try:
        image = (root / stored).resolve()
        return image if image.is_relative_to(root) and image.is_file() else None
    except (OSError, ValueError):  # a NUL byte or an over-long name
        return None
