"""The OpenAPI document's request bodies for the routes that read their body themselves (the search takes a
multipart form or JSON; a batch validates each entry on its own, so one bad entry fails only itself).

`SEARCH_REQUEST_BODY` and `BATCH_REQUEST_BODY` go in the routes' `openapi_extra`; `install_openapi` adds the
JSON models they name (`SearchBody`, `BatchBody` and what those use) to the document's components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from search.request_body import MAX_BATCH_REQUESTS, BatchBody, SearchBody
from search.searcher import MIN_REGION_INSIDE, MIN_REGION_PX

COMPONENT = "#/components/schemas/{model}"
JSON_FIELD = "a JSON {what} (the same as the JSON body's `{name}`: see the SearchBody schema)"


def _json_text(name: str, what: str, example: str) -> dict[str, Any]:
    return {
        "type": "string",
        "contentMediaType": "application/json",
        "description": JSON_FIELD.format(what=what, name=name),
        "examples": [example],
    }


SEARCH_FORM = {
    "type": "object",
    "required": ["image"],
    "additionalProperties": False,
    "properties": {
        "image": {
            "type": "string",
            "format": "binary",
            "description": "the photo (JPEG, PNG, WebP, GIF, BMP, HEIC/HEIF)",
        },
        "top_k": {"type": "integer", "minimum": 1, "description": "matches per garment"},
        "min_score": {"type": "number", "description": "drop matches scoring under this"},
        "collapse_variants": {
            "type": "boolean",
            "description": "one match per product group (item_group_id), listing its variants (default true)",
        },
        "category": {"type": "string", "description": "only match this catalogue category"},
        "text": {"type": "string", "description": 'a refinement, e.g. "in red, not striped"'},
        "filters": _json_text("filters", "object", '{"price_max": 80, "attributes": {"colour": "red"}}'),
        "weights": _json_text("weights", "object of group -> weight", '{"colour": 3}'),
        "attribute_weight": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "0 = visual only, 1 = attributes only",
        },
        "profile": _json_text(
            "profile", "object", '{"colours": ["navy"], "avoid_colours": ["orange"], "styles": ["casual"]}'
        ),
        "profile_id": {
            "type": "string",
            "description": "a stored style profile (POST /v1/profiles) to apply (404 if unknown)",
        },
        "session_id": {"type": "string", "description": "a co-viewing session (404 if unknown)"},
        "region": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "JSON [x0, y0, x1, y1], pixels of the photo after EXIF orientation: search this "
            "box as the one garment (no detection). Clipped to the photo when at least "
            f"{MIN_REGION_INSIDE:.0%} of its area is on it; at least {MIN_REGION_PX}x{MIN_REGION_PX} pixels.",
            "examples": ["[120, 200, 380, 560]"],
        },
    },
}

SEARCH_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": SEARCH_FORM},
            "application/json": {"schema": {"$ref": COMPONENT.format(model="SearchBody")}},
        },
    }
}

BATCH_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"at most {MAX_BATCH_REQUESTS} searches",
        "content": {"application/json": {"schema": {"$ref": COMPONENT.format(model="BatchBody")}}},
    }
}


def install_openapi(app: FastAPI) -> None:
    """Build the document once, on first request, with the JSON request models among its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            _, definitions = models_json_schema(
                [(SearchBody, "validation"), (BatchBody, "validation")], ref_template=COMPONENT
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in definitions.get("$defs", {}).items():
                schemas.setdefault(name, schema)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
