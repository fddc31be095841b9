from __future__ import annotations

import pytest

from models.attributes.refinement import MAX_TEXT_CHARS, Refinement, parse_refinement
from models.attributes.taxonomy import Taxonomy, load_taxonomy


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


def wanted(refinement: Refinement) -> dict[str, set[str]]:
    return {group: set(values) for group, values in refinement.wanted.items()}


def unwanted(refinement: Refinement) -> dict[str, set[str]]:
    return {group: set(values) for group, values in refinement.unwanted.items()}


@pytest.mark.parametrize(
    ("text", "category", "expected"),
    [
        ("in red", None, {"colour": {"red"}}),
        ("In RED!", "top", {"colour": {"red"}}),
        ("with long sleeves", None, {"sleeve_length": {"long"}}),
        ("with long sleeves", "dress", {"sleeve_length": {"long"}}),
        ("long-sleeved", "top", {"sleeve_length": {"long"}}),
        ("3/4 sleeves", "top", {"sleeve_length": {"three-quarter"}}),
        ("light blue", None, {"colour": {"light blue"}}),
        ("Light-Blue please", None, {"colour": {"light blue"}}),
        ("navy blue", None, {"colour": {"navy"}}),
        ("red or blue", None, {"colour": {"red", "blue"}}),
        ("ankle boots", "footwear", {"footwear_type": {"ankle boot"}}),
        ("ankle boots", None, {"footwear_type": {"ankle boot"}}),
        (
            "chelsea boots in black suede",
            "footwear",
            {"footwear_type": {"ankle boot"}, "colour": {"black"}, "material": {"suede"}},
        ),
        (
            "women's high-waisted jeans",
            "trousers",
            {"gender": {"women"}, "rise": {"high"}, "material": {"denim"}},
        ),
        ("polka dots", None, {"pattern": {"dotted"}}),
        ("in plaid", None, {"pattern": {"checked"}}),
        ("black tie", "dress", {"style": {"formal"}}),  # the longer phrase beats the colour
        ("laces", None, {"closure": {"lace-up"}}),  # exact "laces" beats de-pluralised material "lace"
        ("no sleeves", "dress", {"sleeve_length": {"sleeveless"}}),  # a phrase first, not a negation
        ("no pattern", None, {"pattern": {"solid"}}),
    ],
)
def test_wanted_phrases(
    taxonomy: Taxonomy, text: str, category: str | None, expected: dict[str, set[str]]
) -> None:
    refinement = parse_refinement(text, taxonomy, category)
    assert wanted(refinement) == expected
    assert refinement.unwanted == {}
    assert refinement.unmatched == ()
    assert not refinement.empty


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("skirt", {"length": {"maxi"}}),
        ("dress", {"length": {"maxi"}}),  # length comes before sleeve_length in the file
        (None, {"length": {"maxi"}}),
        ("top", {"sleeve_length": {"long"}}),  # length does not apply to tops
        ("bag", {}),
    ],
)
def test_ambiguous_word_goes_to_first_applicable_group(
    taxonomy: Taxonomy, category: str | None, expected: dict[str, set[str]]
) -> None:
    refinement = parse_refinement("long", taxonomy, category)
    assert wanted(refinement) == expected
    assert refinement.unmatched == (() if expected else ("long",))


def test_short_is_mini_on_a_dress_and_a_sleeve_on_a_top(taxonomy: Taxonomy) -> None:
    assert wanted(parse_refinement("short", taxonomy, "dress")) == {"length": {"mini"}}
    assert wanted(parse_refinement("short", taxonomy, "top")) == {"sleeve_length": {"short"}}
    assert wanted(parse_refinement("short sleeves", taxonomy, "dress")) == {"sleeve_length": {"short"}}


@pytest.mark.parametrize(
    ("text", "category", "want", "exclude"),
    [
        ("not striped", None, {}, {"pattern": {"striped"}}),
        ("no stripes", None, {}, {"pattern": {"striped"}}),
        ("NOT Striped.", "top", {}, {"pattern": {"striped"}}),
        ("red, not striped or checked", None, {"colour": {"red"}}, {"pattern": {"striped", "checked"}}),
        ("not striped, checked", None, {}, {"pattern": {"striped", "checked"}}),
        (
            "neither striped nor checked, in navy",
            "top",
            {"colour": {"navy"}},
            {"pattern": {"striped", "checked"}},
        ),
        ("not striped, long sleeves", "top", {"sleeve_length": {"long"}}, {"pattern": {"striped"}}),
        ("not striped and red", None, {"colour": {"red"}}, {"pattern": {"striped"}}),
        ("not striped but with long sleeves", "top", {"sleeve_length": {"long"}}, {"pattern": {"striped"}}),
        ("no leather boots", "footwear", {"footwear_type": {"boot"}}, {"material": {"leather"}}),
        ("without a hood", "outerwear", {}, {"neckline": {"hooded"}}),
        ("non-leather", None, {}, {"material": {"leather"}}),
        ("anything but black", None, {}, {"colour": {"black"}}),
        ("isn't floral", None, {}, {"pattern": {"floral"}}),
        ("not red or blue", None, {}, {"colour": {"red", "blue"}}),
        ("not striped or red", None, {}, {"pattern": {"striped"}, "colour": {"red"}}),  # "or" crosses groups
        ("no striped, red", None, {"colour": {"red"}}, {"pattern": {"striped"}}),  # "," does not
        (
            "no leather or suede boots",
            "footwear",
            {"footwear_type": {"boot"}},
            {"material": {"leather", "suede"}},
        ),
        ("red, not red", None, {}, {"colour": {"red"}}),  # an exclusion wins over a wish
    ],
)
def test_negation_scope(
    taxonomy: Taxonomy,
    text: str,
    category: str | None,
    want: dict[str, set[str]],
    exclude: dict[str, set[str]],
) -> None:
    refinement = parse_refinement(text, taxonomy, category)
    assert wanted(refinement) == want
    assert unwanted(refinement) == exclude
    assert refinement.unmatched == ()


def test_an_unknown_word_ends_the_negation(taxonomy: Taxonomy) -> None:
    refinement = parse_refinement("not sparkly red", taxonomy)
    assert wanted(refinement) == {"colour": {"red"}}
    assert refinement.unwanted == {}
    assert refinement.unmatched == ("sparkly",)


def test_unmatched_words_are_reported_once_in_order(taxonomy: Taxonomy) -> None:
    refinement = parse_refinement("Sparkly red with glitter, very sparkly", taxonomy)
    assert wanted(refinement) == {"colour": {"red"}}
    assert refinement.unmatched == ("sparkly", "glitter")


def test_category_restricts_the_groups(taxonomy: Taxonomy) -> None:
    assert wanted(parse_refinement("high heels", taxonomy, "footwear")) == {"footwear_type": {"heel"}}
    on_top = parse_refinement("high heels", taxonomy, "top")
    assert on_top.empty and on_top.unmatched == ("high",)  # "heels" is a category noun there
    assert parse_refinement("ankle boots", taxonomy, "top").unmatched == ("ankle",)
    # the category may be any spelling
    assert wanted(parse_refinement("high rise", taxonomy, "jeans")) == {"rise": {"high"}}
    # an exact category noun beats a de-pluralised attribute ("short" = length mini); "jeans" is denim
    assert wanted(parse_refinement("red shorts", taxonomy, "shorts")) == {"colour": {"red"}}
    assert wanted(parse_refinement("jeans", taxonomy, "trousers")) == {"material": {"denim"}}


def test_neutral_words_are_not_unmatched(taxonomy: Taxonomy) -> None:
    refinement = parse_refinement("I'd like a red dress in a floral print, please", taxonomy, "dress")
    assert wanted(refinement) == {"colour": {"red"}, "pattern": {"floral"}}
    assert refinement.unmatched == ()
    assert parse_refinement("colour", taxonomy).empty and parse_refinement("colour", taxonomy).unmatched == ()


def test_results_follow_taxonomy_group_order(taxonomy: Taxonomy) -> None:
    refinement = parse_refinement("for women, leather, striped, red", taxonomy)
    assert list(refinement.wanted) == ["colour", "pattern", "material", "gender"]


@pytest.mark.parametrize("text", ["", "   ", "the and or, please", "!!!"])
def test_empty_text(taxonomy: Taxonomy, text: str) -> None:
    refinement = parse_refinement(text, taxonomy)
    assert refinement.empty
    assert refinement == Refinement({}, {}, ())


def test_text_length_limit(taxonomy: Taxonomy) -> None:
    at_limit = ("red " * MAX_TEXT_CHARS)[:MAX_TEXT_CHARS]
    assert wanted(parse_refinement(at_limit, taxonomy)) == {"colour": {"red"}}
    with pytest.raises(ValueError, match="201 characters"):
        parse_refinement("x" * (MAX_TEXT_CHARS + 1), taxonomy)
    assert MAX_TEXT_CHARS == 200
