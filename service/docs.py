"""The API's documentation as this service publishes it, with nothing fetched from elsewhere: Swagger UI at
/docs from the files of the swagger-ui-bundle package (mounted at /docs-assets, not a CDN), so the page
works on an air-gapped install; and the OpenAPI document's error responses under their real media type,
application/problem+json (service/errors.py). Like /openapi.json, neither is keyed nor rate limited
(service/access.py guards /v1/ only)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from service.errors import PROBLEM_JSON

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs-assets"
ERROR_SCHEMA = "#/components/schemas/ErrorOut"
# FastAPI's own 422 body, which this service never sends (validation errors are problem details).
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs (and its OAuth2 redirect page), its files at /docs-assets; needs the app made
    with `docs_url=None` (FastAPI's own /docs loads Swagger UI from a CDN)."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        return problem_responses(default_openapi())

    app.openapi = openapi  # type: ignore[method-assign]
    if app.openapi_url is None:
        return
    openapi_url = app.openapi_url
    redirect_url = app.swagger_ui_oauth2_redirect_url or f"{DOCS_PATH}/oauth2-redirect"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url=redirect_url,
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def problem_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (changed in place, and returned) with every error response as application/problem+json:
    the ErrorOut ones FastAPI put under application/json, and its default 422 (HTTPValidationError) where a
    route declares none. Idempotent: FastAPI caches the schema and this runs on every /openapi.json."""
    if "ErrorOut" not in schema.get("components", {}).get("schemas", {}):
        return schema  # no route declares error bodies
    for operation in _operations(schema):
        for response in operation.get("responses", {}).values():
            content = response.get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
            if ref == ERROR_SCHEMA:
                content[PROBLEM_JSON] = content.pop("application/json")
            elif ref.endswith("/HTTPValidationError"):
                response["content"] = {PROBLEM_JSON: {"schema": {"$ref": ERROR_SCHEMA}}}
                response["description"] = "invalid request: the fields at fault are in `errors`"
    components = schema["components"]["schemas"]
    for name in FASTAPI_VALIDATION_SCHEMAS:  # the first refers to the second
        if name in components and f'"#/components/schemas/{name}"' not in json.dumps(schema):
            del components[name]
    return schema


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    methods = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    return [item[method] for item in schema.get("paths", {}).values() for method in methods if method in item]
