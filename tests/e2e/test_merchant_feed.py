"""Issue 19's "done when", over the real CLI and a running server: a Merchant Center TSV of the clothing
data whose image links are served by a local HTTP server, two colour variants per item_group_id and
additional image links, builds; a search shows one result per group with its variants; a nightly sync
after one title change, one image change, one removal and one addition reports exactly that; a sync that
would remove half the catalogue and a feed with 75% bad rows are both refused while the server keeps its
items."""

from __future__ import annotations

import csv
import functools
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.serving import cli, running_server, tiny_model_env, wait_until
from tests.helpers import DATA_DIR

pytestmark = [pytest.mark.slow, pytest.mark.data]
CLOTHING = DATA_DIR / "clothing"
COLUMNS = ["id", "title", "link", "image_link", "additional_image_link", "price", "availability", "brand",
           "color", "size", "item_group_id", "google_product_category"]  # fmt: skip
GROUPS = ("tee", "trousers", "dress")  # two colour variants each
LABELS = {"tee": "T-Shirt", "trousers": "Pants", "dress": "Dress"}
CATEGORY = {
    "tee": "Apparel & Accessories > Clothing > Shirts & Tops",
    "trousers": "Pants",
    "dress": "Dresses",
}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        return


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A local image CDN over the clothing photos: (base URL, the folder it serves)."""
    if not (CLOTHING / "images.csv").is_file():
        pytest.skip(f"the clothing data is not under {CLOTHING} (set FASHION_DATA_DIR)")
    root = tmp_path_factory.mktemp("cdn")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _photos(label: str, count: int) -> list[Path]:
    with (CLOTHING / "images.csv").open(encoding="utf-8") as handle:
        rows = [row["image"] for row in csv.DictReader(handle) if row["label"] == label]
    found = [CLOTHING / "images" / f"{image}.jpg" for image in rows]
    return [path for path in found if path.is_file()][:count]


def _catalogue(base: str, root: Path) -> list[dict[str, str]]:
    """8 rows: 3 groups x 2 colours (a main and an additional image each), and 2 products of their own."""
    rows = []
    for group in GROUPS:
        photos = _photos(LABELS[group], 4)
        for number, colour in enumerate(("red", "blue")):
            main, side = photos[2 * number], photos[2 * number + 1]
            for photo in (main, side):
                shutil.copy(photo, root / photo.name)
            rows.append({
                "id": f"{group}-{colour}", "title": f"{group} in {colour}",
                "link": f"https://shop.example/{group}", "image_link": f"{base}/{main.name}",
                "additional_image_link": f"{base}/{side.name}", "price": "29.90 EUR",
                "availability": "in stock", "brand": "Acme", "color": colour, "size": "M",
                "item_group_id": group, "google_product_category": CATEGORY[group],
            })  # fmt: skip
    for number, photo in enumerate(_photos("Shoes", 2)):
        shutil.copy(photo, root / photo.name)
        rows.append({
            "id": f"shoe-{number}", "title": f"shoe {number}", "link": "https://shop.example/shoe",
            "image_link": f"{base}/{photo.name}", "additional_image_link": "", "price": "59 EUR",
            "availability": "out of stock", "brand": "Acme", "color": "black", "size": "42",
            "item_group_id": "", "google_product_category": "Apparel & Accessories > Shoes",
        })  # fmt: skip
    return rows


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _json(result: object) -> dict[str, object]:
    assert getattr(result, "returncode", 1) == 0, getattr(result, "stderr", "")
    return dict(json.loads(result.stdout))  # type: ignore[attr-defined]


def test_a_merchant_feed_builds_collapses_variants_and_syncs(cdn: tuple[str, Path], tmp_path: Path) -> None:
    base, root = cdn
    (tmp_path / "model").mkdir()
    env = tiny_model_env(tmp_path / "model")
    rows = _catalogue(base, root)
    index = tmp_path / "index"
    built = _json(cli("index", "build", "--catalog", str(_write(tmp_path / "feed.tsv", rows)), "--out",
                      str(index), "--no-progress", "--json", env=env))  # fmt: skip
    assert built["count"] == 8 and built["skipped"] == []
    assert (tmp_path / "index.cache" / "images").is_dir()  # the download cache, beside the link

    serving = {**env, "FASHION_RELOAD_POLL_S": "0.2"}
    with running_server(index, serving, tmp_path / "server.log") as server:
        photo = (root / Path(rows[0]["image_link"]).name).read_bytes()
        answer = httpx.post(f"{server}/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")},
                            data={"top_k": "10"}, timeout=60).json()  # fmt: skip
        matches = [m for garment in answer["garments"] for m in garment["matches"]]
        groups = [m["group_id"] for m in matches if m["group_id"]]
        assert len(groups) == len(set(groups)), groups  # one result per product group
        tee = next(m for m in matches if m["group_id"] == "tee")
        assert sorted((v["item_id"], v["colour"]) for v in tee["variants"]) == [
            ("tee-blue", "blue"),
            ("tee-red", "red"),
        ]
        assert tee["image_url"].startswith(base)  # the feed's link, not the download cache

        # Nightly sync: one title, one image (new bytes behind a new link), one row gone, one new.
        changed = [dict(row) for row in rows]
        changed[0]["title"] = "tee in red, now on sale"
        spare = _photos("Shirt", 2)
        for photo_path in spare:
            shutil.copy(photo_path, root / photo_path.name)
        changed[2]["image_link"] = f"{base}/{spare[0].name}"
        removed = changed.pop(7)
        changed.append(
            {**removed, "id": "shoe-new", "title": "new shoe", "image_link": f"{base}/{spare[1].name}"}
        )
        feed = _write(tmp_path / "feed-2.tsv", changed)
        plan = _json(cli("index", "sync", str(feed), "--index", str(index), "--dry-run", "--json", env=env))
        synced = _json(
            cli("index", "sync", str(feed), "--index", str(index), "--json", "--no-progress", env=env)
        )
        for summary in (plan, synced):
            assert (summary["added"], summary["changed"], summary["removed"]) == (1, 2, 1), summary
        assert synced["embedded"] == 2 and synced["dry_run"] is False and plan["dry_run"] is True

        def title() -> object:
            return httpx.get(f"{server}/v1/items/tee-red").json()["title"]

        wait_until(lambda: title() == "tee in red, now on sale", 15, "the sync's build to be served")
        assert httpx.get(f"{server}/v1/items/shoe-1").status_code == 404
        assert httpx.get(f"{server}/v1/items/shoe-new").status_code == 200

        # A truncated feed (half the rows) and a mangled one (75% bad rows) are refused; nothing changes.
        serving_build = httpx.get(f"{server}/readyz").json()
        truncated = _write(tmp_path / "feed-half.tsv", changed[:4])
        refused = cli("index", "sync", str(truncated), "--index", str(index), "--json", env=env)
        assert refused.returncode == 1 and "--max-removed-ratio" in refused.stderr
        mangled = [dict(row) for row in changed]
        for row in mangled[:6]:
            row["image_link"] = ""
        bad = cli("index", "build", "--catalog", str(_write(tmp_path / "feed-bad.tsv", mangled)), "--out",
                  str(index), "--no-progress", env=env)  # fmt: skip
        assert bad.returncode == 1 and "6 of 8 rows" in bad.stderr and "--max-bad-ratio" in bad.stderr
        assert httpx.get(f"{server}/readyz").json() == serving_build
