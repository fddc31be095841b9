"""Shopper text ("in red", "with long sleeves", "not striped or checked") -> attribute preferences.

Rules, in order, at each word of the text (case-, accent- and punctuation-insensitive, like the taxonomy):

1. Phrases: the longest run of words (a trailing plural tolerated) that is a value name or synonym of a group
   applying to the garment's category (every group when the category is None). An exact phrase beats a
   de-pluralised one ("laces" is closure lace-up, not material lace); longer beats shorter ("light blue" is
   not "blue", "long sleeves" is sleeve_length long, "ankle boots" is footwear_type ankle boot).
2. Ambiguity: a phrase that names values in several applicable groups goes to the first of them in taxonomy
   file order. The file puts `length` before `sleeve_length`, so "long" / "short" is a length (maxi / mini)
   on a dress, skirt, trousers, outerwear or with no category, and a sleeve length on a top.
3. Negation: not, no, without, non, except, never, neither, isn't, don't, avoid, exclude, excluding, and
   "anything but" / "other than" / "rather than", exclude the next phrase. The exclusion carries across
   "or" / "nor" to any phrase, and across "," or directly adjacent words to a phrase of the same group
   ("not striped, checked" excludes both; "no leather boots" excludes leather but wants boots; "not striped,
   long sleeves" wants long sleeves). It ends at and / but / with / plus, at ; . ! ? :, at a category noun
   and at a word that is not understood. Phrases that begin with a negation word are phrases first ("no
   sleeves" wants sleeveless, "no pattern" wants solid).
4. Neutral words: stopwords, category nouns ("dress", "heels" on a top) and group names or aliases
   ("colour", "sleeves", "print") are understood but give no preference. A group phrase beats a category
   noun of the same length ("jeans" is material denim), unless only its singular matched and the noun is
   exact ("shorts" is a noun, not length "short" = mini). Every other word is reported in `unmatched`,
   never silently dropped.
5. A value both wanted and excluded is only excluded ("red, not red" excludes red).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from models.attributes.taxonomy import Taxonomy, phrase_key, plural_keys

MAX_TEXT_CHARS = 200
NEGATIONS = frozenset(
    "not no without non except never neither nothing isnt arent dont doesnt avoid exclude excluding "
    "minus".split()
)
NEGATION_PAIRS = frozenset(
    {("anything", "but"), ("everything", "but"), ("other", "than"), ("rather", "than")}
)
CARRIERS = frozenset({"or", "nor"})
RESETS = frozenset({"and", "but", "with", "plus", ";", ".", "!", "?", ":"})
STOPWORDS = frozenset(
    "a an the in on of to for from at by as is are be it its im id ive i me my we want wanted would "
    "like love prefer preferably ideally need looking find show get give something anything one ones "
    "some any more very really quite bit little kind sort please pls thanks thank you that this "
    "these those which has have having also too just only maybe perhaps instead similar same".split()
)
_TOKEN = re.compile(r"[a-z0-9]+|[,;.!?:]")


@dataclass(frozen=True)
class Refinement:
    wanted: dict[str, frozenset[str]]  # group -> canonical values the shopper asked for
    unwanted: dict[str, frozenset[str]]  # group -> canonical values the shopper excluded
    unmatched: tuple[str, ...]  # words not understood, lower case, first occurrence order

    @property
    def empty(self) -> bool:
        return not self.wanted and not self.unwanted


@dataclass(frozen=True)
class _Index:
    phrases: dict[str, tuple[tuple[str, str], ...]]  # phrase key -> (group, value) per group, file order
    longest: int  # words in the longest phrase
    categories: frozenset[str]  # category names and synonyms (phrase keys)
    group_words: frozenset[str]  # group names and aliases (phrase keys)


def parse_refinement(text: str, taxonomy: Taxonomy, category: str | None = None) -> Refinement:
    """Preferences expressed in `text` for a garment of `category` (any spelling; None: every group).

    Raises ValueError for text over MAX_TEXT_CHARS characters."""
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"refinement text has {len(text)} characters; at most {MAX_TEXT_CHARS} are allowed")
    index = _index(taxonomy)
    applicable = frozenset(group.name for group in taxonomy.groups_for(category))
    tokens = _tokens(text)
    wanted: dict[str, set[str]] = {}
    unwanted: dict[str, set[str]] = {}
    unmatched: dict[str, None] = {}
    negate, link, last_group = False, "", ""
    position = 0
    while position < len(tokens):
        found = _match(tokens, position, index.longest, lambda key: _attribute(index, applicable, key))
        noun = _match(tokens, position, index.longest, lambda key: _category(index, key))
        if found is not None and (noun is None or found[:2] >= noun[:2]):
            length, _, (group, value) = found
            carried = link in ("negation", "or") or (link in ("comma", "adjacent") and group == last_group)
            negated = negate and carried
            (unwanted if negated else wanted).setdefault(group, set()).add(value)
            negate, link, last_group = negated, "adjacent" if negated else "", group
            position += length
            continue
        word = tokens[position]
        pair = tuple(tokens[position : position + 2])
        if pair in NEGATION_PAIRS or word in NEGATIONS:
            negate, link = True, "negation"
            position += 2 if pair in NEGATION_PAIRS else 1
            continue
        if noun is not None:
            negate = False
            position += noun[0]
            continue
        if word in CARRIERS:
            link = "or" if negate else link
        elif word == ",":
            link = "comma" if negate and link != "negation" else link
        elif word in RESETS:
            negate = False
        elif word not in STOPWORDS and word not in index.group_words and word not in ",;.!?:":
            unmatched[word] = None
            negate = False
        position += 1
    for group, values in unwanted.items():
        wanted[group] = wanted.get(group, set()) - values
    order = list(taxonomy.groups)
    return Refinement(
        wanted={g: frozenset(wanted[g]) for g in order if wanted.get(g)},
        unwanted={g: frozenset(unwanted[g]) for g in order if unwanted.get(g)},
        unmatched=tuple(unmatched),
    )


def _tokens(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return _TOKEN.findall(folded.replace("'", ""))


def _match(
    tokens: list[str], start: int, longest: int, lookup: Callable[[str], tuple[str, str] | None]
) -> tuple[int, bool, tuple[str, str]] | None:
    """(words, exact, found) for the longest phrase starting at `start` that `lookup` knows; at one length an
    exact phrase before a de-pluralised one."""
    for length in range(min(longest, len(tokens) - start), 0, -1):
        key = " ".join(tokens[start : start + length])
        for candidate in (key, *plural_keys(key)):
            found = lookup(candidate)
            if found is not None:
                return length, candidate == key, found
    return None


def _attribute(index: _Index, applicable: frozenset[str], key: str) -> tuple[str, str] | None:
    """(group, value) of the first applicable group, in file order, that has phrase `key`."""
    return next((hit for hit in index.phrases.get(key, ()) if hit[0] in applicable), None)


def _category(index: _Index, key: str) -> tuple[str, str] | None:
    return ("category", key) if key in index.categories else None


@functools.lru_cache(maxsize=8)
def _index(taxonomy: Taxonomy) -> _Index:
    phrases: dict[str, list[tuple[str, str]]] = {}
    for name in taxonomy.groups:
        for key, value in taxonomy.phrases(name).items():
            phrases.setdefault(key, []).append((name, value))
    categories = frozenset(taxonomy.category_phrases())
    group_words = frozenset(
        phrase_key(word) for group in taxonomy.groups.values() for word in (group.name, *group.aliases)
    )
    longest = max(len(key.split()) for key in (*phrases, *categories))
    return _Index({k: tuple(v) for k, v in phrases.items()}, longest, categories, group_words)
