"""The assistant's insight card: where the shopper stands, from the session's activity, by documented rules.

The cart replays every activity entry the session keeps (the most recent 200): add_to_cart adds one of the
item, remove_from_cart takes one away, purchase takes the item out (it is bought). The intent is the first
of these rules that holds, over the most recent RECENT entries:

1. hesitating: an item was added to the cart and then removed (and not added back since); or one item was
   viewed (view_item) at least LONG_VIEWS times with LONG_DWELL_S seconds in all, and is not in the cart.
2. ready_to_buy: the cart holds something.
3. comparing: at least COMPARED distinct items of one category were viewed or clicked.
4. browsing: anything else (and a session without activity).

`returning` and the profile's one-line summary come from the shopper page (PUT /v1/sessions/{id}/profile);
the opener is a template per rule that the assistant edits before sending.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from service.shop_schemas import CartLine, InsightOut

RECENT = 20
LONG_VIEWS = 3
LONG_DWELL_S = 45.0
COMPARED = 2
LOOKED_AT = {"view_item", "click"}


def cart_of(activity: Sequence[Mapping[str, Any]]) -> list[CartLine]:
    lines: OrderedDict[str, list[Any]] = OrderedDict()  # item_id -> [category, quantity]
    for entry in activity:
        item_id, kind = entry.get("item_id"), entry.get("type")
        if item_id is None:
            continue
        if kind == "add_to_cart":
            line = lines.setdefault(item_id, [entry.get("category"), 0])
            line[1] += 1
        elif kind == "remove_from_cart" and item_id in lines:
            lines[item_id][1] -= 1
        elif kind == "purchase":
            lines.pop(item_id, None)
        if item_id in lines and lines[item_id][1] <= 0:
            del lines[item_id]
    return [CartLine(item_id=i, category=c, quantity=q) for i, (c, q) in lines.items()]


def _named(category: str | None) -> str:
    return f"the {category}" if category else "an item"


def _plural(category: str | None) -> str:
    if not category:
        return "items"
    if category.endswith("ss"):
        return category + "es"
    return category if category.endswith("s") else category + "s"


def _hesitation(recent: Sequence[Mapping[str, Any]], in_cart: set[str]) -> tuple[str, str] | None:
    """(reason, opener) of rule 1, or None."""
    for position, entry in enumerate(recent):
        item_id = entry.get("item_id")
        if entry.get("type") != "remove_from_cart" or item_id in in_cart:
            continue
        added_before = any(
            e.get("type") == "add_to_cart" and e.get("item_id") == item_id for e in recent[:position]
        )
        if added_before:
            named = _named(entry.get("category"))
            return (
                f"added {named} to the cart, then removed it",
                f"I noticed you took {named} out of your cart. Can I help with the size or the fit, "
                "or find you something similar?",
            )
    views: Counter[str] = Counter()
    dwell: dict[str, float] = {}
    category: dict[str, str | None] = {}
    for entry in recent:
        item_id = entry.get("item_id")
        if entry.get("type") == "view_item" and item_id is not None:
            views[item_id] += 1
            dwell[item_id] = dwell.get(item_id, 0.0) + float(entry.get("dwell_s") or 0.0)
            category[item_id] = entry.get("category")
    for item_id, count in views.most_common():
        if count >= LONG_VIEWS and dwell[item_id] >= LONG_DWELL_S and item_id not in in_cart:
            named = _named(category[item_id])
            return (
                f"looked at {named} {count} times ({dwell[item_id]:.0f} s) without adding it",
                f"{named[0].upper()}{named[1:]} seems to have caught your eye. Would you like to know more "
                "about it, or see it in another colour?",
            )
    return None


def _compared(recent: Iterable[Mapping[str, Any]]) -> tuple[str | None, int] | None:
    seen: dict[str | None, set[str]] = {}
    for entry in recent:
        if entry.get("type") in LOOKED_AT and entry.get("item_id") is not None:
            seen.setdefault(entry.get("category"), set()).add(entry["item_id"])
    if not seen:
        return None
    category, items = max(seen.items(), key=lambda pair: len(pair[1]))
    return (category, len(items)) if len(items) >= COMPARED else None


def insight(activity: Sequence[Mapping[str, Any]], profile: str | None, returning: bool) -> InsightOut:
    """The card for a session's activity (oldest first), the shopper's profile line and visitor status."""
    cart = cart_of(activity)
    recent = list(activity[-RECENT:])
    hesitation = _hesitation(recent, {line.item_id for line in cart})
    compared = _compared(recent)
    if hesitation is not None:
        intent, (reason, opener) = "hesitating", hesitation
    elif cart:
        count = sum(line.quantity for line in cart)
        intent = "ready_to_buy"
        reason = f"{count} item{'s' if count != 1 else ''} in the cart"
        opener = "Good choice! Anything I can help with before you check out, like sizing or delivery?"
    elif compared is not None:
        category, count = compared
        intent = "comparing"
        reason = f"compared {count} {_plural(category)}"
        opener = f"Comparing a few {_plural(category)}? I can tell you how they differ."
    else:
        intent = "browsing"
        bought = [e for e in recent if e.get("type") == "purchase"]
        reason = (
            f"bought {_named(bought[-1].get('category'))}"
            if bought
            else "looking around"
            if activity
            else "no activity yet"
        )
        opener = (
            "Welcome back! I'm here if you'd like a hand finding something."
            if returning
            else "Hi! I'm here if you'd like a hand finding something."
        )
        if profile:
            taste = profile.split(";")[0].strip()
            taste = "like " + taste.removeprefix("likes ") if taste.startswith("likes ") else "like " + taste
            opener += f" I see you {taste}: shall I put a few pieces together for you?"
    return InsightOut(
        intent=intent, reason=reason, cart=cart, returning=returning, profile=profile, opener=opener
    )


def insight_json(activity_texts: Iterable[str], context_json: str | None) -> str:
    """The InsightOut JSON of a session's activity entries (JSON texts) and its shopper context
    (`{"profile": str | null, "returning": bool}` as JSON, or None)."""
    context = json.loads(context_json) if context_json else {}
    activity = [json.loads(text) for text in activity_texts]
    card = insight(activity, context.get("profile"), bool(context.get("returning")))
    return card.model_dump_json()


def context_json(profile: str | None, returning: bool) -> str:
    return json.dumps({"profile": profile, "returning": returning}, separators=(",", ":"))
