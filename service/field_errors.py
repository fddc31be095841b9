"""Validation errors as the `errors` of a problem (service/errors.py): {"field": "dotted.path", "message":
plain words} per field at fault, never a framework's type names nor the value sent."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# A domain InvalidRequestError names its field first, as search/query.py's do ("top_k must be between 1 and
# 20, got 0", "weights: ..."): that name and the rest of the sentence make its `errors` entry.
_LEADING_FIELD = re.compile(
    r"([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)(?::\s+|\s+(?=(?:must|is|nests)\s))(.+)", re.S
)


def named_field(message: str) -> list[dict[str, str]]:
    found = _LEADING_FIELD.fullmatch(message)
    return [{"field": found.group(1), "message": found.group(2)}] if found else []


# Plain words per pydantic error type, after the field's name. The {names} are the error's ctx: limits from
# the schema, never the value sent. A type not listed is "is not valid": pydantic's own messages name
# classes ("instance of CatalogRow"), and the value_error of a file field names Python types.
WORDING: Mapping[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not an accepted option",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_parsing_size": "must be a whole number of reasonable size",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "string_unicode": "must be UTF-8 text",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long",
    "string_pattern_mismatch": "is not in the expected form",
    "too_short": "must have at least {min_length} entries",
    "too_long": "must have at most {max_length} entries",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "multiple_of": "must be a multiple of {multiple_of}",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "json_type": "must be JSON text",
    "url_type": "must be a URL",
    "url_parsing": "must be a URL",
    "url_scheme": "must be a URL starting with {expected_schemes}",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
    "date_type": "must be a date (YYYY-MM-DD)",
    "date_parsing": "must be a date (YYYY-MM-DD)",
    "datetime_type": "must be a date and time (ISO 8601)",
    "datetime_parsing": "must be a date and time (ISO 8601)",
}
FILE_EXPECTED = "must be a file upload"


def validation_errors(problems: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's errors (RequestValidationError.errors()) as {"field", "message"} in plain words: the field
    a dotted path without the leading "body" (the whole body is "body")."""
    return [_field_error(problem) for problem in problems]


def _field_error(problem: Mapping[str, Any]) -> dict[str, str]:
    kind = str(problem.get("type", ""))
    ctx = problem.get("ctx") or {}
    loc = list(problem.get("loc", ()))
    if loc[:1] == ["body"]:
        loc = loc[1:]
    if kind == "json_invalid":  # loc: the character where parsing stopped
        at = f" at character {loc[0]}" if loc and isinstance(loc[0], int) else ""
        return {"field": "body", "message": f"is not valid JSON ({ctx.get('error', 'unreadable')}{at})"}
    return {"field": ".".join(str(part) for part in loc) or "body", "message": _plain_words(kind, ctx)}


def _plain_words(kind: str, ctx: Mapping[str, Any]) -> str:
    if kind in ("value_error", "assertion_error"):  # a validator's own sentence, unless the framework's
        said = str(ctx.get("error", ""))
        if "UploadFile" in said:
            return FILE_EXPECTED
        return said if said and "<class" not in said else "is not valid"
    if kind in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "is_instance_of":
        return FILE_EXPECTED if "UploadFile" in str(ctx.get("class", "")) else "is not valid"
    try:
        return WORDING[kind].format_map(ctx)
    except (KeyError, ValueError, IndexError):
        return "is not valid"
