"""JSON form options are bounded before they are parsed: size, nesting depth and number length."""

from __future__ import annotations

import pytest

from search.errors import InvalidRequestError
from search.query import MAX_JSON_DEPTH, FiltersIn, ProfileIn, json_depth, load_json, parse_json_field


@pytest.mark.parametrize(
    ("text", "depth"),
    [("1", 0), ("[]", 1), ('{"a": [1, {"b": 2}]}', 3), ('{"a": "[[[[{{{{"}', 1), ('["\\"[[["]', 1)],
)
def test_json_depth_counts_only_structure(text: str, depth: int) -> None:
    assert json_depth(text) == depth


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nests deeper"),
        ("[1" + "0" * 100 + "]", "a number of 101 characters"),
        ("[1e" + "9" * 100 + "]", "a number of"),
        ("[Infinity]", "Infinity is not a JSON number"),
        ("[" + "1," * 10_000 + "1]", "characters long"),
        ("{", "not valid JSON"),
    ],
)
def test_hostile_json_is_an_invalid_request(raw: str, said: str) -> None:
    with pytest.raises(InvalidRequestError, match=said):
        load_json("weights", raw)


def test_a_price_band_upside_down_is_refused_in_filters_and_profile() -> None:
    for model in (FiltersIn, ProfileIn):
        with pytest.raises(InvalidRequestError, match="price_min 50.0 is above price_max 10.0"):
            parse_json_field("profile", '{"price_min": 50, "price_max": 10}', model)
        parsed = parse_json_field("profile", '{"price_min": 10, "price_max": 50}', model)
        assert parsed is not None and parsed.price_max == 50
