"""The garment attribute taxonomy: categories and attribute groups, loaded from `taxonomy.json` (data, not
code) and checked on load.

Matching of names, synonyms and aliases goes through :func:`phrase_key`: case-, accent-, space-, hyphen-,
underscore- and punctuation-insensitive, apostrophes dropped ("Light-Blue" = "light_blue" = "LIGHT BLUE",
"women's" = "womens"). A trailing plural "s" / "es" is tolerated when the exact phrase is unknown.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import FashionSearchError

TAXONOMY_PATH = Path(__file__).resolve().parent / "taxonomy.json"
TAXONOMY_VERSION = 1
ALL_CATEGORIES = "*"


class TaxonomyError(FashionSearchError):
    """The taxonomy file is unreadable or inconsistent; the message names the file and the problem."""


def phrase_key(text: str) -> str:
    """Comparable form of a name, synonym or alias: lower case ASCII words separated by single spaces."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", folded.replace("'", "")).split())


def plural_keys(key: str) -> tuple[str, ...]:
    """Singular guesses for a key whose last word may be plural ("ankle boots" -> "ankle boot")."""
    last = key.rsplit(" ", 1)[-1]
    guesses = []
    if len(last) > 3 and last.endswith("s"):
        guesses.append(key[:-1])
        if last.endswith("es"):
            guesses.append(key[:-2])
    return tuple(guesses)


@dataclass(frozen=True)
class AttributeValue:
    name: str
    synonyms: tuple[str, ...]
    prompts: tuple[str, ...]  # zero-shot phrases; (name,) when the file gives none


@dataclass(frozen=True)
class AttributeGroup:
    name: str
    label: str
    values: tuple[AttributeValue, ...]
    applies_to: frozenset[str] | None  # canonical categories; None: every category
    aliases: tuple[str, ...]

    @property
    def value_names(self) -> tuple[str, ...]:
        return tuple(value.name for value in self.values)

    def applies(self, category: str | None) -> bool:
        """Whether the group describes garments of `category` (canonical); None: every group applies."""
        return category is None or self.applies_to is None or category in self.applies_to


@dataclass(frozen=True)
class Category:
    name: str
    synonyms: tuple[str, ...]
    compatible: tuple[str, ...]  # catalogue categories a detected garment may match; itself first


class Taxonomy:
    """Read-only after construction (safe to share between threads); build it with :func:`load_taxonomy`."""

    def __init__(
        self,
        groups: dict[str, AttributeGroup],
        categories: dict[str, Category],
        version: int = TAXONOMY_VERSION,
        description: str = "",
    ) -> None:
        self.groups = groups
        self.categories = categories
        self.version = version
        self.description = description
        self._values = {
            g.name: {phrase_key(p): v.name for v in g.values for p in (v.name, *v.synonyms)}
            for g in groups.values()
        }
        self._group_keys = {phrase_key(a): g.name for g in groups.values() for a in (g.name, *g.aliases)}
        self._category_keys = {
            phrase_key(s): c.name for c in categories.values() for s in (c.name, *c.synonyms)
        }

    def value_count(self) -> int:
        return sum(len(group.values) for group in self.groups.values())

    def group(self, name_or_alias: str) -> AttributeGroup | None:
        name = self._group_keys.get(phrase_key(name_or_alias))
        return self.groups[name] if name is not None else None

    def phrases(self, group: str) -> dict[str, str]:
        """Every phrase of a group (as :func:`phrase_key`) -> canonical value. Do not modify."""
        found = self.group(group)
        return self._values[found.name] if found is not None else {}

    def normalise_value(self, group: str, raw: str) -> str | None:
        """Canonical value of `group` (name or alias) that `raw` names, or None."""
        table = self.phrases(group)
        key = phrase_key(raw)
        for candidate in (key, *plural_keys(key)):
            if candidate in table:
                return table[candidate]
        return None

    def normalise_attributes(self, raw: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(canonical group -> canonical value, leftovers as given). A key naming no group, a value the group
        does not know, or a second key for an already filled group goes to the leftovers."""
        known: dict[str, str] = {}
        leftovers: dict[str, str] = {}
        for key, value in raw.items():
            group = self.group(key)
            canonical = self.normalise_value(group.name, value) if group is not None else None
            if group is None or canonical is None or group.name in known:
                leftovers[key] = value
            else:
                known[group.name] = canonical
        return known, leftovers

    def normalise_category(self, raw: str) -> str:
        """Canonical category, or the cleaned input (:func:`phrase_key`) for one the taxonomy lacks."""
        key = phrase_key(raw)
        for candidate in (key, *plural_keys(key)):
            if candidate in self._category_keys:
                return self._category_keys[candidate]
        return key

    def category_phrases(self) -> dict[str, str]:
        """Every category name and synonym (as :func:`phrase_key`) -> canonical category. Do not modify."""
        return self._category_keys

    def compatible_categories(self, category: str) -> tuple[str, ...]:
        found = self.categories.get(self.normalise_category(category))
        return found.compatible if found is not None else (category,)

    def groups_for(self, category: str | None) -> list[AttributeGroup]:
        """Groups that describe garments of `category` (any spelling), in file order; None: all groups."""
        canonical = self.normalise_category(category) if category is not None else None
        return [group for group in self.groups.values() if group.applies(canonical)]


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Load and check a taxonomy file; the shipped one (`path` None) is loaded once and shared."""
    return _load_default() if path is None else _load(Path(path))


@functools.lru_cache(maxsize=1)
def _load_default() -> Taxonomy:
    return _load(TAXONOMY_PATH)


def _load(path: Path) -> Taxonomy:
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except OSError as exc:
        raise TaxonomyError(f"taxonomy {path}: cannot read: {exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and duplicate keys are ValueErrors
        raise TaxonomyError(f"taxonomy {path}: not valid JSON: {exc}") from exc
    try:
        return _Parser().taxonomy(data)
    except _Invalid as exc:
        raise TaxonomyError(f"taxonomy {path}: {exc}") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


class _Invalid(Exception):
    """A problem in the file's content; `_load` adds the path."""


class _Parser:
    """Turns the decoded JSON into a Taxonomy, raising _Invalid with the location of the first problem."""

    def taxonomy(self, data: Any) -> Taxonomy:
        data = _object(data, "the file")
        for key in ("version", "categories", "groups"):
            if key not in data:
                raise _Invalid(f"missing top-level key {key!r}")
        if data["version"] != TAXONOMY_VERSION:
            raise _Invalid(f"version is {data['version']!r}; this code reads version {TAXONOMY_VERSION}")
        categories = self.categories(_object(data["categories"], "categories"))
        raw_groups = data["groups"]
        if not isinstance(raw_groups, list) or not raw_groups:
            raise _Invalid("groups must be a non-empty list")
        groups: dict[str, AttributeGroup] = {}
        for index, raw in enumerate(raw_groups):
            group = self.group(raw, f"groups[{index}]", categories)
            if group.name in groups:
                raise _Invalid(f"duplicate group name {group.name!r}")
            groups[group.name] = group
        _unique_phrases(
            ((g.name, p) for g in groups.values() for p in (g.name, *g.aliases)), "group name or alias"
        )
        return Taxonomy(groups, categories, TAXONOMY_VERSION, str(data.get("description", "")))

    def categories(self, raw: dict[str, Any]) -> dict[str, Category]:
        if not raw:
            raise _Invalid("categories is empty")
        categories: dict[str, Category] = {}
        for name, entry in raw.items():
            where = f"category {name!r}"
            entry = _object(entry, where)
            compatible = _strings(entry.get("compatible", [name]), f"{where}: compatible")
            categories[name] = Category(
                name, _strings(entry.get("synonyms", []), f"{where}: synonyms"), compatible
            )
        for category in categories.values():
            unknown = [c for c in category.compatible if c not in categories]
            if unknown:
                raise _Invalid(f"category {category.name!r}: compatible names unknown categories {unknown}")
            if category.compatible[:1] != (category.name,):
                raise _Invalid(f"category {category.name!r}: compatible must start with {category.name!r}")
        _unique_phrases(
            ((c.name, p) for c in categories.values() for p in (c.name, *c.synonyms)), "category synonym"
        )
        return categories

    def group(self, raw: Any, where: str, categories: dict[str, Category]) -> AttributeGroup:
        raw = _object(raw, where)
        name = _string(raw.get("name"), f"{where}: name")
        where = f"group {name!r}"
        applies = raw.get("applies_to")
        if applies is None:
            raise _Invalid(f"{where}: applies_to is missing (a list of categories, or {ALL_CATEGORIES!r})")
        applies_to = None
        if applies != ALL_CATEGORIES:
            listed = _strings(applies, f"{where}: applies_to")
            unknown = [c for c in listed if c not in categories]
            if unknown or not listed:
                raise _Invalid(f"{where}: applies_to names unknown categories {unknown or listed}")
            applies_to = frozenset(listed)
        raw_values = raw.get("values")
        if not isinstance(raw_values, list) or not raw_values:
            raise _Invalid(f"{where}: values must be a non-empty list")
        values = tuple(self.value(v, f"{where}: values[{i}]") for i, v in enumerate(raw_values))
        names = [value.name for value in values]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise _Invalid(f"{where}: duplicate value {duplicates[0]!r}")
        _unique_phrases(((v.name, p) for v in values for p in (v.name, *v.synonyms)), f"{where}: synonym")
        label = raw.get("label", name.replace("_", " ").capitalize())
        aliases = _strings(raw.get("aliases", []), f"{where}: aliases")
        return AttributeGroup(name, _string(label, f"{where}: label"), values, applies_to, aliases)

    def value(self, raw: Any, where: str) -> AttributeValue:
        raw = _object(raw, where)
        name = _string(raw.get("name"), f"{where}: name")
        synonyms = _strings(raw.get("synonyms", []), f"value {name!r}: synonyms")
        prompts = _strings(raw.get("prompts", [name]), f"value {name!r}: prompts") or (name,)
        return AttributeValue(name, synonyms, prompts)


def _object(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _Invalid(f"{where} must be a JSON object, not {type(raw).__name__}")
    return raw


def _string(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not phrase_key(raw):
        raise _Invalid(f"{where} must be a non-empty string with letters or digits, got {raw!r}")
    return raw


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise _Invalid(f"{where} must be a list of strings, got {type(raw).__name__}")
    return tuple(_string(item, where) for item in raw)


def _unique_phrases(owned: Iterable[tuple[str, str]], what: str) -> None:
    """Each (owner, phrase): a phrase (after phrase_key) may belong to one owner only."""
    owners: dict[str, str] = {}
    for owner, phrase in owned:
        key = phrase_key(phrase)
        if owners.setdefault(key, owner) != owner:
            raise _Invalid(f"{what} {phrase!r} maps to both {owners[key]!r} and {owner!r}")
