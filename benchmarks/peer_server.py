"""The peer a developer would assemble instead of this service, for the speed comparison of
benchmarks/realtime.py (issue 15, section 4): a minimal FastAPI app that decodes the upload with PIL,
embeds the whole photo with open_clip ViT-B-32 (its own 224 px preprocess, `torch.inference_mode`,
L2-normalised) and searches an exact FAISS `IndexFlatIP` over the same catalogue, embedded at start-up
with the same model.

    python -m benchmarks.peer_server --catalog FEED --port 8001 [--host 127.0.0.1] [--threads N] [--seed 0]
                                     [--cache DIR]

The weights are random (`pretrained=None`, seeded): this server measures speed only, its matches mean
nothing. Threads: PyTorch's default intra-op thread count (all cores) unless `--threads N` is given, which
sets both PyTorch's and FAISS's. No detection, no attributes, no ranking: one embedding per photo.
With `--cache DIR` the catalogue vectors are kept there (keyed by the feed's SHA-256, the model and the
seed), so a second peer over the same catalogue (another thread count) starts without re-embedding it.

Routes: `POST /v1/search` (multipart `image`, form `top_k`) -> `{"ids", "scores", "timings_ms"}`;
`GET /readyz`; `GET /info` (model, threads, catalogue size, start-up embedding time).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import faiss
import numpy as np
import open_clip
import torch
import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

MODEL_NAME = "ViT-B-32"
BATCH_SIZE = 32


@dataclass(frozen=True)
class PeerOptions:
    catalog: Path
    threads: int | None = None  # None: PyTorch's default
    seed: int = 0
    batch_size: int = BATCH_SIZE
    cache: Path | None = None  # where the catalogue vectors are kept between peers


def read_catalogue(feed: Path) -> list[tuple[str, Path]]:
    """(id, image path) per row of a JSON Lines feed; relative image paths are relative to the feed."""
    rows = []
    for line in feed.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            image = Path(row["image"])
            rows.append((str(row["id"]), image if image.is_absolute() else feed.parent / image))
    return rows


@dataclass
class Peer:
    """The loaded model, its preprocess and the exact index over the catalogue."""

    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    index: faiss.IndexFlatIP
    ids: list[str]
    info: dict[str, Any]

    def encode(self, images: list[Image.Image]) -> np.ndarray:
        with torch.inference_mode():
            batch = torch.stack([self.preprocess(image) for image in images])
            features = self.model.encode_image(batch)  # type: ignore[operator]
            features = torch.nn.functional.normalize(features, dim=-1)
        return np.ascontiguousarray(features.numpy(), dtype=np.float32)


def cache_path(options: PeerOptions) -> Path | None:
    if options.cache is None:
        return None
    key = hashlib.sha256(options.catalog.read_bytes() + f"|{MODEL_NAME}|{options.seed}".encode()).hexdigest()
    return options.cache / f"peer-vectors-{key[:16]}.npy"


def embed_catalogue(peer: Peer, catalogue: list[tuple[str, Path]], batch_size: int) -> np.ndarray:
    vectors = []
    for start in range(0, len(catalogue), batch_size):
        images = []
        for _, path in catalogue[start : start + batch_size]:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        vectors.append(peer.encode(images))
        log.info("peer: embedded %d/%d catalogue images", start + len(images), len(catalogue))
    return np.concatenate(vectors) if vectors else np.zeros((0, peer.index.d), np.float32)


def load_peer(options: PeerOptions) -> Peer:
    if options.threads is not None:
        torch.set_num_threads(options.threads)
        faiss.omp_set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=None)
    model.eval()
    catalogue = read_catalogue(options.catalog)
    dimension = int(model.visual.output_dim)
    peer = Peer(model, preprocess, faiss.IndexFlatIP(dimension), [item_id for item_id, _ in catalogue], {})
    started = time.perf_counter()
    cached = cache_path(options)
    if cached is not None and cached.is_file():
        vectors, source = np.load(cached), f"cache {cached.name}"
        if vectors.shape != (len(catalogue), dimension):
            raise ValueError(
                f"peer cache {cached} holds {vectors.shape}, expected {(len(catalogue), dimension)}"
            )
    else:
        vectors, source = embed_catalogue(peer, catalogue, options.batch_size), "embedded at start-up"
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(".partial.npy")
            np.save(partial, vectors)
            partial.replace(cached)
    peer.index.add(vectors)
    embed_s = time.perf_counter() - started
    peer.info = {
        "model": f"open_clip {MODEL_NAME}, random weights (pretrained=None, seed {options.seed})",
        "image_size": 224,
        "dimension": dimension,
        "index": "faiss.IndexFlatIP (exact)",
        "items": int(peer.index.ntotal),
        "catalogue_vectors": source,
        "catalogue_s": round(embed_s, 1),
        "torch_threads": torch.get_num_threads(),
        "torch_threads_source": "--threads" if options.threads is not None else "PyTorch default",
        "faiss_threads": faiss.omp_get_max_threads(),
    }
    log.info("peer ready: %s", peer.info)
    return peer


def create_peer_app(options: PeerOptions) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.peer = load_peer(options)
        yield

    app = FastAPI(title="open_clip + FAISS peer (speed benchmark)", lifespan=lifespan)

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/info")
    def info() -> dict[str, Any]:
        return dict(app.state.peer.info)

    @app.post("/v1/search")
    def search(image: Annotated[UploadFile, File()], top_k: Annotated[int, Form(ge=1, le=100)] = 10) -> dict:
        peer: Peer = app.state.peer
        started = time.perf_counter()
        try:
            with Image.open(io.BytesIO(image.file.read())) as upload:
                photo = upload.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise HTTPException(422, {"code": "undecodable_image", "message": str(exc)}) from exc
        decoded = time.perf_counter()
        vector = peer.encode([photo])
        embedded = time.perf_counter()
        scores, rows = peer.index.search(vector, top_k)
        done = time.perf_counter()
        return {
            "ids": [peer.ids[row] for row in rows[0] if row >= 0],
            "scores": [
                round(float(score), 4) for score, row in zip(scores[0], rows[0], strict=True) if row >= 0
            ],
            "timings_ms": {
                "decode": round((decoded - started) * 1000, 2),
                "embed": round((embedded - decoded) * 1000, 2),
                "search": round((done - embedded) * 1000, 2),
                "total": round((done - started) * 1000, 2),
            },
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalog", type=Path, required=True, help="JSON Lines feed (id, image, ...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--threads", type=int, default=None, help="PyTorch and FAISS threads (default: PyTorch's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None, help="folder for the catalogue vectors")
    args = parser.parse_args()
    if not args.catalog.is_file():
        raise SystemExit(f"error: catalogue feed not found: {args.catalog}")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {args.threads}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = PeerOptions(args.catalog, args.threads, args.seed, cache=args.cache)
    uvicorn.run(create_peer_app(options), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
