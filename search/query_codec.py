"""A kept search (`search.query_cache.CachedQuery`) as compact JSON, for a paging cache that several replicas
share (service/query_cache_redis.py): no pickles (whoever can write the cache must not run code in the
service), no pixels, and catalogue items by id only (looked up again in the store that reads it back).

What is kept is what a later page needs: each garment's box, attributes and text refinement, and its ranked
pool (candidates, scores, the ranking's settings and profile). The first page's explained matches are not
kept: a later page is explained from the pool. An item that the store no longer holds (the index was rebuilt
without it) is left out of the pool, with its score.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

from indexer.metadata import ItemRecord
from models.attributes.colour import ColourShare
from models.attributes.extractor import GarmentAttributes
from models.attributes.guess import AttributeGuess
from models.attributes.refinement import Refinement
from models.garment import Garment
from search.profile import profile_json, profile_of_json
from search.query_cache import CachedQuery
from search.ranking import Candidate, RankedPool, RankingConfig
from search.searcher import GarmentMatches, OutfitResult

FORMAT = 2  # 2: style profiles (search/profile.py)
ItemLookup = Callable[[str], ItemRecord | None]


def encode_query(entry: CachedQuery) -> bytes:
    """The entry as zlib-compressed JSON (its `expires_at` is the cache's business, not kept)."""
    data = {
        "format": FORMAT,
        "image_size": list(entry.image_size) if entry.image_size is not None else None,
        "build": entry.build,
        "query_item": entry.result.query_item,
        "timings_ms": entry.result.timings_ms,
        "garments": [_garment(matches) for matches in entry.result.garments],
    }
    return zlib.compress(json.dumps(data, separators=(",", ":")).encode("utf-8"), 3)


def decode_query(blob: bytes, lookup: ItemLookup, expires_at: float) -> CachedQuery:
    """The entry `encode_query` wrote, its items looked up by id; ValueError when the blob is not one."""
    try:
        data = json.loads(zlib.decompress(blob))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        garments = [_garment_of(item, lookup) for item in data["garments"]]
        size = data["image_size"]
        result = OutfitResult(garments, dict(data["timings_ms"]), data["query_item"])
        return CachedQuery(result, (int(size[0]), int(size[1])) if size else None, data["build"], expires_at)
    except (KeyError, TypeError, IndexError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a kept search: {exc}") from exc


def _garment(matches: GarmentMatches) -> dict[str, Any]:
    garment, attributes = matches.garment, matches.attributes
    return {
        "box": list(garment.box),
        "category": garment.category,
        "score": garment.score,
        "product_shot": garment.product_shot,
        "values": {group: guess.to_json() for group, guess in attributes.values.items()},
        "colours": [[share.name, share.fraction] for share in attributes.colours],
        "unknown": list(attributes.unknown),
        "refinement": _refinement(matches.refinement),
        "pool": _pool(matches.pool) if matches.pool is not None else None,
        "best_score": matches.best_score,
    }


def _garment_of(data: dict[str, Any], lookup: ItemLookup) -> GarmentMatches:
    box = tuple(int(value) for value in data["box"])
    garment = Garment(
        (box[0], box[1], box[2], box[3]),
        data["category"],
        float(data["score"]),
        product_shot=bool(data["product_shot"]),
    )
    attributes = GarmentAttributes(
        {group: AttributeGuess.from_json(guess) for group, guess in data["values"].items()},
        [ColourShare(str(name), float(fraction)) for name, fraction in data["colours"]],
        tuple(data["unknown"]),
    )
    pool = _pool_of(data["pool"], lookup) if data["pool"] is not None else None
    return GarmentMatches(
        garment, attributes, _refinement_of(data["refinement"]), [], pool, data["best_score"]
    )


def _pool(pool: RankedPool) -> dict[str, Any]:
    profile = pool.profile
    return {
        "candidates": [
            [c.item.item_id, c.visual_score, c.image, [v.item_id for v in c.variants]]
            for c in pool.candidates
        ],
        "scores": list(pool.scores),
        "values": {group: guess.to_json() for group, guess in pool.garment_values.items()},
        "config": pool.config.model_dump(mode="json"),
        "refinement": _refinement(pool.refinement),
        "profile": profile_json(profile) if profile is not None else None,
    }


def _pool_of(data: dict[str, Any], lookup: ItemLookup) -> RankedPool:
    candidates, scores = [], []
    for (item_id, visual_score, image, variant_ids), score in zip(
        data["candidates"], data["scores"], strict=True
    ):
        item = lookup(item_id)
        if item is None:
            continue
        variants = tuple(v for v in (lookup(variant) for variant in variant_ids) if v is not None)
        candidates.append(Candidate(item, float(visual_score), int(image), variants))
        scores.append(float(score))
    profile = data["profile"]
    return RankedPool(
        tuple(candidates),
        tuple(scores),
        {group: AttributeGuess.from_json(guess) for group, guess in data["values"].items()},
        RankingConfig.model_validate(data["config"]),
        _refinement_of(data["refinement"]),
        profile_of_json(profile) if profile is not None else None,
    )


def _refinement(refinement: Refinement | None) -> dict[str, Any] | None:
    if refinement is None:
        return None
    return {
        "wanted": {group: sorted(values) for group, values in refinement.wanted.items()},
        "unwanted": {group: sorted(values) for group, values in refinement.unwanted.items()},
        "unmatched": list(refinement.unmatched),
    }


def _refinement_of(data: dict[str, Any] | None) -> Refinement | None:
    if data is None:
        return None
    return Refinement(
        {group: frozenset(values) for group, values in data["wanted"].items()},
        {group: frozenset(values) for group, values in data["unwanted"].items()},
        tuple(data["unmatched"]),
    )
