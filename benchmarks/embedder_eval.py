"""Retrieval quality of the fashion embedder on the held-out split, against two baselines, in one run.

    python -m benchmarks.embedder_eval --clothing DIR --ccp DIR \
        --weights models/weights/fashion-embedder-v1.safetensors --out benchmarks/results/embedder_eval.json

Tasks (label-level relevance, exhaustive cosine ranking):
- clothing -> clothing: every held-out clothing image queries the other held-out images (leave-one-out);
  relevant = same fine label (17 classes), and separately same coarse category.
- CCP -> catalogue: garment crops from the held-out CCP photos query the held-out clothing images;
  relevant = same coarse category (top/outerwear/dress/trousers/shorts/skirt/footwear/hat). Bag and
  scarf crops have no catalogue counterpart and are left out.
Models: the trained FashionNet, an HSV colour-histogram baseline, and a seeded random-init open_clip ViT
with the same input size.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from benchmarks.arguments import add_held_out_data, argument_parser
from benchmarks.machine import machine_info
from models.embedder import OpenClipEmbedder
from models.fashion_net import FashionNetEmbedder
from models.fashion_net.data import (
    COARSE_CATEGORY,
    ccp_samples,
    clothing_samples,
    load_image,
    split_clothing,
)
from models.spec import EmbedderSpec

RANDOM_VIT = "embedder-eval-random-vit"


class ColourHistogram:
    """Joint HSV histogram (8 hue x 4 saturation x 4 value bins), square-rooted and L2-normalised."""

    name = "colour-histogram:hsv-8x4x4"
    dimension = 128

    def __init__(self, size: int) -> None:
        self.size = size

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.zeros((len(images), self.dimension), dtype=np.float32)
        for row, image in enumerate(images):
            hsv = np.asarray(
                image.convert("RGB").resize((self.size, self.size)).convert("HSV"), dtype=np.int64
            )
            bins = (hsv[..., 0] * 8 // 256) * 16 + (hsv[..., 1] * 4 // 256) * 4 + hsv[..., 2] * 4 // 256
            out[row] = np.sqrt(np.bincount(bins.ravel(), minlength=self.dimension))
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def random_vit(input_size: int, folder: Path) -> OpenClipEmbedder:
    config = {
        "embed_dim": 256,
        "vision_cfg": {
            "image_size": input_size,
            "layers": 6,
            "width": 256,
            "head_width": 64,
            "patch_size": 16,
        },
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
    }
    (folder / f"{RANDOM_VIT}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return OpenClipEmbedder(EmbedderSpec(model_name=RANDOM_VIT, pretrained="random", seed=0, batch_size=32))


def average_precision(relevant_sorted: np.ndarray) -> float:
    hits = np.cumsum(relevant_sorted)
    total = hits[-1]
    if total == 0:
        return 0.0
    ranks = np.arange(1, len(relevant_sorted) + 1)
    return float((relevant_sorted * hits / ranks).sum() / total)


def retrieval_metrics(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_labels: list[str],
    gallery_labels: list[str],
    leave_one_out: bool,
) -> dict[str, float]:
    similarity = queries @ gallery.T
    if leave_one_out:
        np.fill_diagonal(similarity, -np.inf)
    gallery_array = np.array(gallery_labels)
    p1, p10, aps = [], [], []
    for row, label in enumerate(query_labels):
        order = np.argsort(-similarity[row], kind="stable")
        if leave_one_out:
            order = order[order != row]
        relevant = (gallery_array[order] == label).astype(np.float64)
        p1.append(relevant[0])
        p10.append(relevant[:10].mean())
        aps.append(average_precision(relevant))
    return {
        "precision_at_1": round(float(np.mean(p1)), 4),
        "precision_at_10": round(float(np.mean(p10)), 4),
        "mAP": round(float(np.mean(aps)), 4),
        "queries": len(query_labels),
        "gallery": len(gallery_labels) - (1 if leave_one_out else 0),
    }


def evaluate(embedder, catalogue: list[Image.Image], crops: list[Image.Image], labels: dict) -> dict:
    start = time.perf_counter()
    catalogue_vectors = embedder.embed_images(catalogue)
    crop_vectors = embedder.embed_images(crops)
    seconds = time.perf_counter() - start
    return {
        "name": embedder.name,
        "dimension": int(catalogue_vectors.shape[1]),
        "clothing_to_clothing_label": retrieval_metrics(
            catalogue_vectors, catalogue_vectors, labels["fine"], labels["fine"], leave_one_out=True
        ),
        "clothing_to_clothing_coarse": retrieval_metrics(
            catalogue_vectors, catalogue_vectors, labels["coarse"], labels["coarse"], leave_one_out=True
        ),
        "ccp_crop_to_catalogue_coarse": retrieval_metrics(
            crop_vectors, catalogue_vectors, labels["crop_coarse"], labels["coarse"], leave_one_out=False
        ),
        "ccp_crop_to_catalogue_label": retrieval_metrics(
            crop_vectors, catalogue_vectors, labels["crop_fine"], labels["fine"], leave_one_out=False
        ),
        "embed_ms_per_image": round(1000 * seconds / (len(catalogue) + len(crops)), 2),
    }


def main() -> None:
    parser = argument_parser(__doc__, "benchmarks/results/embedder_eval.json")
    add_held_out_data(parser)
    parser.add_argument("--weights", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    _, heldout = split_clothing(clothing_samples(args.clothing), seed=0)
    crops = [s for s in ccp_samples(args.ccp, heldout=True) if s.label in COARSE_CATEGORY]
    labels = {
        "fine": [s.label for s in heldout],
        "coarse": [COARSE_CATEGORY[s.label] for s in heldout],
        "crop_fine": [s.label for s in crops],
        "crop_coarse": [COARSE_CATEGORY[s.label] for s in crops],
    }
    catalogue_images = [load_image(s) for s in heldout]
    crop_images = [load_image(s) for s in crops]

    fashion = FashionNetEmbedder(args.weights, threads=args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, embedder in (
            ("fashion_net", fashion),
            ("colour_histogram", ColourHistogram(fashion.input_size)),
            ("random_init_open_clip", random_vit(fashion.input_size, Path(tmp))),
        ):
            results[key] = evaluate(embedder, catalogue_images, crop_images, labels)
            print(key, json.dumps(results[key]))

    report = {
        "benchmark": "embedder_eval",
        "machine": {**machine_info(), "torch_threads": torch.get_num_threads()},
        "split": {
            "clothing_heldout": "15% of each label, seeded (models.fashion_net.data.split_clothing, seed 0)",
            "ccp_heldout": "photo ids random.Random(0).sample(range(1, 901), 90)",
            "clothing_heldout_images": len(heldout),
            "ccp_heldout_crops": len(crops),
            "ccp_crop_categories": dict(Counter(labels["crop_coarse"])),
            "catalogue_categories": dict(Counter(labels["coarse"])),
        },
        "input_size": fashion.input_size,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
