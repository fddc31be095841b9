"""Reading a search request off HTTP: a multipart form (the photo as a file part, options as string fields)
or a JSON body (`search.request_body.SearchBody`). Either way every field is checked before any model runs:
an option this API does not have is a 422 naming the accepted ones, not silently ignored."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from models.attributes.taxonomy import Taxonomy
from models.errors import ImageTooLargeError, shown
from search.errors import InvalidRequestError
from search.query import MAX_NUMBER_CHARS, bounded, refused_constant, search_options, search_request
from search.request_body import MAX_BATCH_REQUESTS, SearchBody
from search.searcher import SearchRequest
from search.settings import Settings

FORM_FIELDS = (
    "image", "top_k", "min_score", "category", "text", "filters", "weights", "attribute_weight", "profile",
    "session_id", "region", "collapse_variants", "profile_id",
)  # fmt: skip
JSON_MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class SearchInput:
    """One search as read: a JSON `body`, or a multipart `form`'s string options; and the photo's bytes
    when they came with the request (a file part or base64). A URL is fetched later, off the event loop."""

    body: SearchBody | None = None
    form: dict[str, str] | None = None
    data: bytes | None = None

    @property
    def profile_id(self) -> str | None:
        found = self.body.profile_id if self.body is not None else (self.form or {}).get("profile_id")
        return found or None

    @property
    def session_id(self) -> str | None:
        found = self.body.session_id if self.body is not None else (self.form or {}).get("session_id")
        return found or None

    def options(self, settings: Settings, taxonomy: Taxonomy) -> SearchRequest:
        """The searcher's request; InvalidRequestError / FilterError (422) for a bad option."""
        if self.body is not None:
            return search_options(settings, taxonomy, self.body)
        form = self.form or {}
        top_k = _number("top_k", form.get("top_k"), int)
        k = settings.default_top_k if top_k is None else top_k
        return search_request(
            settings, taxonomy, k, form.get("category") or None,
            form.get("text"), form.get("filters"), form.get("weights"), form.get("profile"),
            _number("attribute_weight", form.get("attribute_weight"), float), form.get("region"),
            _number("min_score", form.get("min_score"), float), _flag("collapse_variants", form),
        )  # fmt: skip


def is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower() == JSON_MEDIA_TYPE


async def read_search(request: Request, max_upload_bytes: int) -> SearchInput:
    if is_json(request):
        return search_input(load_body(await request.body()), max_upload_bytes)
    return await read_form(request, max_upload_bytes)


def load_body(raw: bytes) -> Any:
    """A JSON body, its numbers bounded (a 5,000-digit number is a 422, not seconds of int conversion);
    nesting is bounded by the parser's recursion limit and the route's body limit."""
    try:
        return json.loads(raw, parse_int=bounded(int), parse_constant=refused_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidRequestError(f"the body is not valid JSON{where}") from None
    except RecursionError:
        raise InvalidRequestError("the body nests too deeply") from None
    except ValueError as exc:
        raise InvalidRequestError(f"the body: {exc}") from None


def batch_entries(value: Any) -> list[Any]:
    """The searches of a batch body {"requests": [...]}: 1 to MAX_BATCH_REQUESTS, each checked on its own
    later (one bad entry fails only itself)."""
    if not isinstance(value, dict) or set(value) != {"requests"}:
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise InvalidRequestError(f'requests: a batch is {{"requests": [search, ...]}}, got {shown(got)}')
    entries = value["requests"]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BATCH_REQUESTS:
        size = f"{len(entries)} entries" if isinstance(entries, list) else type(entries).__name__
        raise InvalidRequestError(
            f"requests must be a list of 1 to {MAX_BATCH_REQUESTS} searches, got {size}"
        )
    return entries


def search_input(value: Any, max_upload_bytes: int) -> SearchInput:
    """A parsed JSON search (the body of /v1/search, or one entry of a batch) as a SearchInput."""
    try:
        body = SearchBody.model_validate(value)
    except ValidationError as exc:
        raise RequestValidationError(_with_body_prefix(exc.errors())) from None
    data = None
    if body.image is not None and body.image.base64 is not None:
        data = decoded_base64(body.image.base64, max_upload_bytes)
    return SearchInput(body=body, data=data)


def decoded_base64(text: str, max_upload_bytes: int) -> bytes:
    if len(text) > -(-max_upload_bytes * 4 // 3) + 4:
        raise ImageTooLargeError(f"image.base64 holds more than the {max_upload_bytes}-byte limit")
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("image.base64 is not valid base64 (standard alphabet, padded)") from None
    if len(data) > max_upload_bytes:
        raise ImageTooLargeError(f"the image is larger than the {max_upload_bytes}-byte limit")
    if not data:
        raise InvalidRequestError("image.base64 is empty")
    return data


async def read_form(request: Request, max_upload_bytes: int) -> SearchInput:
    """The multipart form: one file part `image` and string options. Unknown fields are refused."""
    try:
        form = await request.form(max_files=1, max_fields=len(FORM_FIELDS))
    except MultiPartException as exc:
        raise InvalidRequestError(f"the multipart form is malformed: {exc.message}") from None
    try:
        unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
        if unknown:
            raise InvalidRequestError(
                f"{', '.join(shown(name) for name in unknown)} "
                f"{'is not an accepted option' if len(unknown) == 1 else 'are not accepted options'}; "
                f"the form accepts: {', '.join(FORM_FIELDS)}"
            )
        repeated = sorted({name for name in form.keys() if len(form.getlist(name)) > 1})
        if repeated:
            raise InvalidRequestError(f"{', '.join(repeated)} given more than once")
        image = form.get("image")
        if image is None:
            raise InvalidRequestError("image is required: the photo as a file part of the form")
        if not isinstance(image, UploadFile):
            raise InvalidRequestError("image must be a file upload (a file part of the form), not text")
        texts: dict[str, str] = {}
        for name in FORM_FIELDS[1:]:
            value = form.get(name)
            if isinstance(value, UploadFile):
                raise InvalidRequestError(f"{name} must be a text field, not a file")
            if value is not None:
                texts[name] = value
        data = await image.read(max_upload_bytes + 1)  # a spooled file on disk is read in the pool
    finally:
        await form.close()
    if len(data) > max_upload_bytes:
        raise ImageTooLargeError(f"the upload is larger than the {max_upload_bytes}-byte limit")
    return SearchInput(form=texts, data=data)


def _number(name: str, raw: str | None, kind: type[int] | type[float]) -> Any:
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_NUMBER_CHARS:
        raise InvalidRequestError(
            f"{name} is {len(raw)} characters long; a number has at most {MAX_NUMBER_CHARS}"
        )
    try:
        value = kind(raw.strip())
    except ValueError:
        article = "an integer" if kind is int else "a number"
        raise InvalidRequestError(f"{name} must be {article}, got {shown(raw)}") from None
    if kind is float and value != value:  # NaN
        raise InvalidRequestError(f"{name} must be a number, got {shown(raw)}")
    return value


def _flag(name: str, form: dict[str, str]) -> bool | None:
    raw = (form.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise InvalidRequestError(f"{name} must be true or false, got {shown(form[name])}")


def _with_body_prefix(errors: list[Any]) -> list[Any]:
    return [{**error, "loc": ("body", *error.get("loc", ()))} for error in errors]
