"""The end-to-end demo, offline: generate a catalogue -> `fashion-search index build` ->
`fashion-search serve` (a real uvicorn process) -> POST /v1/search with street scenes and product shots.

    python -m scripts.demo [--out demo-out] [--items 300] [--scenes 4] [--top-k 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from scripts.demo_catalog import generate_catalog

READY_TIMEOUT_S = 120


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args(argv)

    print(f"1/4 generating a demo catalogue of {args.items} products and {args.scenes} street scenes")
    catalog = generate_catalog(args.out / "catalog", n_items=args.items, n_scenes=args.scenes)

    print("2/4 building the index with `fashion-search index build`")
    index = args.out / "index"
    command = [sys.executable, "-m", "scripts.cli"]
    build = [*command, "index", "build", "--catalog", str(catalog.feed), "--out", str(index)]
    subprocess.run(build, check=True)

    port = free_port()
    print(f"3/4 starting `fashion-search serve` on 127.0.0.1:{port}")
    server = subprocess.Popen([*command, "serve", "--index", str(index), "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        print("4/4 searching over HTTP")
        queries = [*catalog.scenes, *sorted((args.out / "catalog" / "images").glob("*.jpg"))[:2]]
        results = {query.name: _search(base, query, args.top_k) for query in queries}
    finally:
        server.terminate()
        server.wait(timeout=30)
    (args.out / "demo-results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"\nall responses saved to {args.out / 'demo-results.json'}")
    return 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_ready(
    base: str, server: subprocess.Popen[bytes], timeout_s: float = READY_TIMEOUT_S, log_hint: str = ""
) -> None:
    """Until `GET /readyz` answers 200; SystemExit (and the server killed) when it exits or times out.
    `log_hint` ends the messages (e.g. "; see server.log")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"error: the service exited with code {server.returncode}{log_hint}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.kill()
    raise SystemExit(f"error: the service was not ready within {timeout_s} s{log_hint}")


def _search(base: str, image: Path, top_k: int) -> dict:
    with image.open("rb") as handle:
        response = httpx.post(
            f"{base}/v1/search",
            files={"image": (image.name, handle, "image/jpeg")},
            data={"top_k": str(top_k)},
            timeout=60,
        )
    response.raise_for_status()
    body = response.json()
    truth = image.with_suffix(".json")
    expected = "product"
    if truth.exists():
        expected = ", ".join(g["category"] for g in json.loads(truth.read_text()))
    print(f"\n== {image.name} ({expected}); {body['timings_ms']['total']:.0f} ms")
    for garment in body["garments"]:
        kind = garment["category"] or "unclassified"
        print(f"   garment {kind} box={garment['box']} score={garment['score']}")
        for rank, match in enumerate(garment["matches"], start=1):
            print(
                f"     {rank}. {match['score']:.3f}  {match['item_id']:<11} {match['category']:<10} "
                f"{match['title']:<36} {match['price']:>7.2f} {match['currency']}"
            )
    return body


if __name__ == "__main__":
    sys.exit(main())
