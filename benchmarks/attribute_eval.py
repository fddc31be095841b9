"""Does attribute re-ranking help? Held-out CCP garment crops query the held-out clothing catalogue.

    python -m benchmarks.attribute_eval --clothing DIR --ccp DIR --out benchmarks/results/attribute_eval.json

Catalogue: the held-out clothing images (coarse category from their label; colour predicted from the
product's foreground by the same extractor the index build uses). Queries: garment boxes from the held-out
CCP photos with a catalogue counterpart, their category taken from the ground truth (a perfect detector),
their colour from the box pixels (no mask). Three rankings in one run, all from the shipped embedder:
  visual       exact cosine search over the whole catalogue (what the foundation did)
  category     the same, restricted to the categories compatible with the garment
  attributes@a category pool re-ranked by search.ranking with the service's default settings and
               attribute_weight a (0.3 is the default)
Metrics over the top 10: category precision (same coarse category) and colour agreement (the item's
colour equals the query's main colour). Colour agreement uses predicted colours on both sides, so it
measures consistency with the extractor, not ground truth (the data has no colour labels).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.arguments import add_held_out_data, argument_parser
from benchmarks.machine import machine_info
from indexer.metadata import ItemRecord
from models.attributes.extractor import AttributeExtractor
from models.attributes.guess import AttributeGuess
from models.attributes.taxonomy import load_taxonomy
from models.fashion_net import FashionNetEmbedder
from models.fashion_net.data import COARSE_CATEGORY, ccp_samples, clothing_samples, load_image, split_clothing
from models.spec import SHIPPED_EMBEDDER
from search.ranking import CATEGORY_GROUP, Candidate, RankingConfig, rank

TOP_K = 10
POOL = 100


def main() -> None:
    parser = argument_parser(__doc__, "benchmarks/results/attribute_eval.json")
    add_held_out_data(parser)
    parser.add_argument("--weights", type=Path, default=SHIPPED_EMBEDDER)
    parser.add_argument(
        "--attribute-weights", default="0.3,0.5", help="comma-separated attribute_weight values to compare"
    )
    args = parser.parse_args()
    alphas = [float(a) for a in args.attribute_weights.split(",")]
    torch.set_num_threads(args.threads)
    taxonomy = load_taxonomy()
    extractor = AttributeExtractor(taxonomy)
    embedder = FashionNetEmbedder(args.weights, threads=args.threads)
    configs = {alpha: RankingConfig(attribute_weight=alpha) for alpha in alphas}
    config = configs[alphas[0]]

    _, heldout = split_clothing(clothing_samples(args.clothing), seed=0)
    heldout = [s for s in heldout if s.label in COARSE_CATEGORY]
    crops = [s for s in ccp_samples(args.ccp, heldout=True) if s.label in COARSE_CATEGORY]
    started = time.perf_counter()
    catalogue_images = [load_image(s) for s in heldout]
    catalogue_vectors = embedder.embed_images(catalogue_images)
    records = []
    for row, (sample, image) in enumerate(zip(heldout, catalogue_images, strict=True)):
        category = COARSE_CATEGORY[sample.label]
        values = extractor.for_product(image, category).values
        records.append(
            ItemRecord(row, sample.key, "", category, "", None, "", True, "", attributes=dict(values))
        )
    catalogue_s = time.perf_counter() - started

    started = time.perf_counter()
    crop_images = [load_image(s) for s in crops]
    crop_vectors = embedder.embed_images(crop_images)
    modes = ["visual", "category", *(f"attributes@{alpha}" for alpha in alphas)]
    per_mode: dict[str, dict[str, list[float]]] = {m: {"category": [], "colour": []} for m in modes}
    categories = np.array([r.category for r in records])
    for sample, image, vector in zip(crops, crop_images, crop_vectors, strict=True):
        category = COARSE_CATEGORY[sample.label]
        values = dict(extractor.for_garments(image, [_whole(image, category)])[0].values)
        colour = values.get("colour")
        scores = catalogue_vectors @ vector
        allowed = np.isin(categories, taxonomy.compatible_categories(category))
        visual = np.argsort(-scores, kind="stable")[:TOP_K]
        pool_scores = np.where(allowed, scores, -np.inf)
        pool = [int(r) for r in np.argsort(-pool_scores, kind="stable")[:POOL] if allowed[r]]
        values[CATEGORY_GROUP] = AttributeGuess(category, 1.0, "predicted")
        candidates = [Candidate(records[r], float(scores[r])) for r in pool]
        rankings = {
            f"attributes@{alpha}": [r.item.row for r in rank(candidates, values, cfg, top_k=TOP_K)]
            for alpha, cfg in configs.items()
        }
        for mode, rows in (
            ("visual", [int(r) for r in visual]),
            ("category", pool[:TOP_K]),
            *rankings.items(),
        ):
            per_mode[mode]["category"].append(float(np.mean([records[r].category == category for r in rows])))
            if colour is not None:
                per_mode[mode]["colour"].append(
                    float(np.mean([_colour(records[r]) == colour.value for r in rows]))
                )
    query_s = time.perf_counter() - started

    results = {
        mode: {
            "category_precision_at_10": round(float(np.mean(m["category"])), 4),
            "colour_agreement_at_10": round(float(np.mean(m["colour"])), 4),
        }
        for mode, m in per_mode.items()
    }
    report = {
        "benchmark": "attribute_eval",
        "machine": {**machine_info(), "torch_threads": torch.get_num_threads()},
        "catalogue_items": len(records),
        "queries": len(crops),
        "queries_with_colour": len(per_mode["visual"]["colour"]),
        "ranking": {"attribute_weights": alphas, "group_weights": dict(config.group_weights)},
        "pool": POOL,
        "results": results,
        "seconds": {"catalogue_embed_and_attributes": round(catalogue_s, 1), "queries": round(query_s, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))  # noqa: T201
    print(f"wrote {args.out}")  # noqa: T201


def _whole(image, category: str):
    from models.detector import Garment

    return Garment((0, 0, *image.size), category, 1.0, mask=np.ones((image.size[1], image.size[0]), bool))


def _colour(record: ItemRecord) -> str | None:
    found = record.attributes.get("colour")
    return found.value if found else None


if __name__ == "__main__":
    main()
