from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from models.attributes.colour import COLOUR_NAMES
from models.attributes.taxonomy import TAXONOMY_PATH, Taxonomy, TaxonomyError, load_taxonomy
from models.errors import FashionSearchError

COLOURS = (
    "black white grey cream beige khaki brown red burgundy pink orange yellow olive green teal".split()
    + ["light blue", "blue", "navy", "purple", "lilac"]
)
GARMENT_CATEGORIES = (
    "top outerwear dress trousers shorts skirt footwear bag hat scarf belt eyewear".split()  # parser classes
)


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


def test_shipped_taxonomy_is_large_enough_and_cached(taxonomy: Taxonomy) -> None:
    assert taxonomy.value_count() >= 65
    assert len(taxonomy.groups) >= 8
    assert load_taxonomy() is taxonomy
    assert TAXONOMY_PATH.name == "taxonomy.json" and TAXONOMY_PATH.is_file()
    assert taxonomy.version == 1 and taxonomy.description


def test_colour_values_are_the_pixel_namer_list_in_order(taxonomy: Taxonomy) -> None:
    assert taxonomy.groups["colour"].value_names == tuple(COLOURS)
    assert tuple(COLOURS) == COLOUR_NAMES


@pytest.mark.parametrize(
    ("group", "applies_to"),
    [
        ("colour", None),
        ("pattern", None),
        ("gender", None),
        ("sleeve_length", {"top", "dress", "outerwear"}),
        ("length", {"dress", "skirt", "trousers", "shorts", "outerwear"}),
        ("rise", {"trousers", "shorts", "skirt"}),
        ("footwear_type", {"footwear"}),
    ],
)
def test_groups_declare_their_categories(taxonomy: Taxonomy, group: str, applies_to: set[str] | None) -> None:
    assert taxonomy.groups[group].applies_to == (None if applies_to is None else frozenset(applies_to))


def test_required_groups_and_values_exist(taxonomy: Taxonomy) -> None:
    required = {
        "pattern": "solid striped checked floral dotted animal graphic camouflage paisley geometric",
        "sleeve_length": "sleeveless short three-quarter long",
        "neckline": "crew v-neck scoop turtleneck collared off-shoulder boat halter square cowl",
        "length": "mini knee midi maxi cropped full ankle",
        "fit": "slim regular loose oversized skinny wide-leg straight bootcut a-line bodycon",
        "closure": "buttons zip lace-up slip-on buckle drawstring hook-and-loop",
        "style": "casual formal business sporty party streetwear bohemian vintage evening",
        "rise": "high mid low",
        "gender": "women men unisex girls boys",
    }
    for group, names in required.items():
        assert set(names.split()) <= set(taxonomy.groups[group].value_names), group
    assert {"colour block"} <= set(taxonomy.groups["pattern"].value_names)
    materials = {"cotton", "denim", "leather", "wool", "knit", "silk", "satin", "linen", "polyester", "lace"}
    assert materials | {"suede", "chiffon", "velvet", "corduroy", "faux fur"} <= set(
        taxonomy.groups["material"].value_names
    )
    footwear = {"sneaker", "boot", "ankle boot", "heel", "sandal", "flat", "loafer", "pump", "wedge", "clog"}
    assert footwear | {"mule"} <= set(taxonomy.groups["footwear_type"].value_names)


def test_every_value_has_prompts_and_unique_names(taxonomy: Taxonomy) -> None:
    for group in taxonomy.groups.values():
        assert len(set(group.value_names)) == len(group.value_names)
        for value in group.values:
            assert value.prompts and all(p.strip() for p in value.prompts), (group.name, value.name)
    assert taxonomy.groups["colour"].values[0].prompts == ("black",)  # defaults to the value name
    striped = taxonomy.groups["pattern"].values[1]
    assert striped.name == "striped" and "striped" in striped.prompts


@pytest.mark.parametrize(
    ("group", "raw", "expected"),
    [
        ("colour", "Crimson", "red"),
        ("colour", "scarlet", "red"),
        ("colour", "Light-Blue", "light blue"),
        ("colour", "light_blue", "light blue"),
        ("colour", "LIGHT  BLUE", "light blue"),
        ("colour", "gray", "grey"),
        ("colour", "Navy Blue", "navy"),
        ("colour", "off-white", "cream"),
        ("color", "Écru", "cream"),
        ("pattern", "stripes", "striped"),
        ("pattern", "Pinstripe", "striped"),
        ("pattern", "breton", "striped"),
        ("pattern", "Plaid", "checked"),
        ("pattern", "tartan", "checked"),
        ("pattern", "gingham", "checked"),
        ("pattern", "check", "checked"),
        ("pattern", "polka dot", "dotted"),
        ("pattern", "Polka-Dots", "dotted"),
        ("pattern", "spots", "dotted"),
        ("pattern", "colour-block", "colour block"),
        ("sleeve_length", "long-sleeved", "long"),
        ("sleeve_length", "Long Sleeves", "long"),
        ("sleeve_length", "long_sleeve", "long"),
        ("sleeve_length", "3/4", "three-quarter"),
        ("sleeves", "sleeveless", "sleeveless"),
        ("material", "jeans", "denim"),
        ("fabric", "Vegan leather", "faux leather"),
        ("neckline", "V Neck", "v-neck"),
        ("neckline", "crewneck", "crew"),
        ("fit", "A-Line", "a-line"),
        ("fit", "wide leg", "wide-leg"),
        ("length", "knee-length", "knee"),
        ("length", "floor length", "maxi"),
        ("length", "shorts", "mini"),  # the demo generator's trousers length "shorts"
        ("rise", "High-Waisted", "high"),
        ("closure", "Velcro", "hook-and-loop"),
        ("closure", "zipper", "zip"),
        ("footwear_type", "Sneakers", "sneaker"),
        ("footwear_type", "chelsea boots", "ankle boot"),
        ("footwear_type", "trainers", "sneaker"),
        ("gender", "Women's", "women"),
        ("gender", "ladies", "women"),
        ("gender", "female", "women"),
        ("gender", "MENS", "men"),
        ("style", "boho", "bohemian"),
    ],
)
def test_synonyms_normalise(taxonomy: Taxonomy, group: str, raw: str, expected: str) -> None:
    assert taxonomy.normalise_value(group, raw) == expected


def test_unknown_values_and_groups_give_none(taxonomy: Taxonomy) -> None:
    assert taxonomy.normalise_value("colour", "sparkly") is None
    assert taxonomy.normalise_value("colour", "") is None
    assert taxonomy.normalise_value("no such group", "red") is None
    assert taxonomy.normalise_value("pattern", "red") is None  # values do not leak across groups


def test_group_aliases(taxonomy: Taxonomy) -> None:
    assert taxonomy.group("colour") is taxonomy.groups["colour"]
    for alias, name in [("color", "colour"), ("Colour", "colour"), ("Sleeve Length", "sleeve_length")]:
        found = taxonomy.group(alias)
        assert found is not None and found.name == name
    assert taxonomy.group("fabric") is taxonomy.groups["material"]
    assert taxonomy.group("shoe type") is taxonomy.groups["footwear_type"]
    assert taxonomy.group("size") is None


def test_normalise_attributes_keeps_what_it_does_not_understand(taxonomy: Taxonomy) -> None:
    raw = {
        "Color": "Crimson",
        "Pattern": "Tartan",
        "fabric": "Jeans",
        "colour": "blue",  # a second colour key: kept, not overwritten or dropped
        "size": "M",
        "sleeve length": "very long indeed",
    }
    known, leftovers = taxonomy.normalise_attributes(raw)
    assert known == {"colour": "red", "pattern": "checked", "material": "denim"}
    assert leftovers == {"colour": "blue", "size": "M", "sleeve length": "very long indeed"}
    assert taxonomy.normalise_attributes({}) == ({}, {})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("T-Shirt", "top"),
        ("tee", "top"),
        ("blouse", "top"),
        ("Hoodie", "top"),
        ("jumper", "top"),
        ("Outwear", "outerwear"),
        ("blazer", "outerwear"),
        ("Jeans", "trousers"),
        ("pants", "trousers"),
        ("leggings", "trousers"),
        ("Sneakers", "footwear"),
        ("boots", "footwear"),
        ("Handbag", "bag"),
        ("purse", "bag"),
        ("backpacks", "bag"),
        ("beanie", "hat"),
        ("Sunglasses", "eyewear"),
        ("dresses", "dress"),
        ("skirt", "skirt"),
        ("Swim-Wear", "swim wear"),  # unknown: cleaned, passed through
        ("  Jewellery ", "jewellery"),
    ],
)
def test_categories_normalise(taxonomy: Taxonomy, raw: str, expected: str) -> None:
    assert taxonomy.normalise_category(raw) == expected


def test_categories_and_compatible_lists(taxonomy: Taxonomy) -> None:
    assert set(taxonomy.categories) == set(GARMENT_CATEGORIES)
    for category in taxonomy.categories.values():
        assert category.compatible[0] == category.name
        assert set(category.compatible) <= set(taxonomy.categories)
    assert taxonomy.compatible_categories("top") == ("top", "outerwear")
    assert taxonomy.compatible_categories("outerwear") == ("outerwear", "top")
    assert taxonomy.compatible_categories("dress") == ("dress",)
    assert taxonomy.compatible_categories("footwear") == ("footwear",)
    assert taxonomy.compatible_categories("jumpsuit") == ("dress",)  # a synonym is normalised first
    assert taxonomy.compatible_categories("swimwear") == ("swimwear",)


def test_groups_for_category(taxonomy: Taxonomy) -> None:
    footwear = [g.name for g in taxonomy.groups_for("footwear")]
    assert "footwear_type" in footwear and "colour" in footwear
    assert "neckline" not in footwear and "sleeve_length" not in footwear
    assert [g.name for g in taxonomy.groups_for("sneakers")] == footwear
    top = [g.name for g in taxonomy.groups_for("top")]
    assert {"neckline", "sleeve_length"} <= set(top) and "footwear_type" not in top and "rise" not in top
    assert taxonomy.groups_for(None) == list(taxonomy.groups.values())
    unknown = {g.name for g in taxonomy.groups_for("swimwear")}
    assert unknown == {g.name for g in taxonomy.groups.values() if g.applies_to is None}
    assert taxonomy.groups["neckline"].applies(None) and not taxonomy.groups["neckline"].applies("bag")


# --- load errors -------------------------------------------------------------------------------------------

MINIMAL: dict[str, Any] = {
    "version": 1,
    "description": "tiny",
    "categories": {
        "top": {"synonyms": ["tee"], "compatible": ["top", "outerwear"]},
        "outerwear": {"synonyms": ["jacket"], "compatible": ["outerwear"]},
    },
    "groups": [
        {
            "name": "colour",
            "aliases": ["color"],
            "applies_to": "*",
            "values": [{"name": "red", "synonyms": ["crimson"]}, {"name": "blue"}],
        },
        {
            "name": "pattern",
            "applies_to": ["top"],
            "values": [
                {"name": "striped", "synonyms": ["stripes"], "prompts": ["striped", "stripy"]},
                {"name": "checked", "synonyms": ["plaid"]},
            ],
        },
    ],
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "taxonomy.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_minimal_file_loads(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(write(tmp_path, MINIMAL))
    assert list(taxonomy.groups) == ["colour", "pattern"]
    assert taxonomy.value_count() == 4
    assert taxonomy.groups["colour"].values[1].prompts == ("blue",)
    assert taxonomy.groups["pattern"].label == "Pattern"
    assert taxonomy.normalise_value("color", "Crimson") == "red"
    assert taxonomy.normalise_category("jackets") == "outerwear"
    assert taxonomy.compatible_categories("outerwear") == ("outerwear",)


def broken(change: str) -> Any:
    data = copy.deepcopy(MINIMAL)
    groups = data["groups"]
    if change == "duplicate value":
        groups[0]["values"].append({"name": "red", "synonyms": ["cherry"]})
    elif change == "synonym collision":
        groups[1]["values"][1]["synonyms"].append("Stripes")
    elif change == "name collision":
        groups[0]["values"].append({"name": "Crimson"})
    elif change == "applies_to unknown":
        groups[1]["applies_to"] = ["top", "spacesuit"]
    elif change == "applies_to missing":
        del groups[1]["applies_to"]
    elif change == "compatible unknown":
        data["categories"]["top"]["compatible"] = ["top", "cape"]
    elif change == "compatible not itself first":
        data["categories"]["top"]["compatible"] = ["outerwear", "top"]
    elif change == "duplicate group":
        groups.append(copy.deepcopy(groups[0]))
    elif change == "alias collision":
        groups[1]["aliases"] = ["Color"]
    elif change == "category synonym collision":
        data["categories"]["outerwear"]["synonyms"].append("tee")
    elif change == "missing groups":
        del data["groups"]
    elif change == "bad version":
        data["version"] = 2
    elif change == "empty values":
        groups[1]["values"] = []
    elif change == "synonyms not a list":
        groups[0]["values"][0]["synonyms"] = "crimson"
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("duplicate value", "duplicate value 'red'"),
        ("synonym collision", "'Stripes' maps to both 'striped' and 'checked'"),
        ("name collision", "'Crimson' maps to both 'red' and 'Crimson'"),
        ("applies_to unknown", "applies_to names unknown categories ['spacesuit']"),
        ("applies_to missing", "applies_to is missing"),
        ("compatible unknown", "compatible names unknown categories ['cape']"),
        ("compatible not itself first", "compatible must start with 'top'"),
        ("duplicate group", "duplicate group name 'colour'"),
        ("alias collision", "'Color' maps to both 'colour' and 'pattern'"),
        ("category synonym collision", "'tee' maps to both 'top' and 'outerwear'"),
        ("missing groups", "missing top-level key 'groups'"),
        ("bad version", "version is 2"),
        ("empty values", "values must be a non-empty list"),
        ("synonyms not a list", "synonyms must be a list of strings"),
    ],
)
def test_broken_files_raise_taxonomy_error(tmp_path: Path, change: str, message: str) -> None:
    path = write(tmp_path, broken(change))
    with pytest.raises(TaxonomyError) as caught:
        load_taxonomy(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, FashionSearchError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"version": 1, "groups": [', "not valid JSON"),
        ("", "not valid JSON"),
        ('{"version": 1, "version": 1}', "duplicate key 'version'"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_unparseable_files_raise_taxonomy_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TaxonomyError, match=message) as caught:
        load_taxonomy(path)
    assert str(path) in str(caught.value)


def test_missing_file_raises_taxonomy_error(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match="cannot read"):
        load_taxonomy(tmp_path / "absent.json")
