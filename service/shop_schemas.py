"""Request and response models of the storefront page's API: co-viewing sessions and shopper signals.
Field names are a contract with service/static/ (the shopper and assistant pages)."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from search.request_body import ProfileIn
from search.responses import SearchResponse, StrictModel

Sender = Literal["shopper", "assistant"]
EventType = Literal["select_garment", "click", "add_to_cart", "view_item", "remove_from_cart", "purchase"]
Intent = Literal["browsing", "comparing", "hesitating", "ready_to_buy"]
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Category = Annotated[str, StringConstraints(min_length=1, max_length=100)]
GarmentIndex = Annotated[int, Field(ge=0, le=1000, description="index into the search's `garments`")]
# Characters that show nothing on their own: controls, format characters (zero-width space and joiners, BOM,
# bidi marks), surrogates, unassigned code points and separators, besides whitespace; and letters drawn blank.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp"})
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")  # Hangul fillers, the blank Braille pattern


def visible(text: str) -> str:
    """Refuse text that shows nothing: only whitespace and invisible characters (a zero-width space)."""
    if all(
        c.isspace() or c in BLANK_LETTERS or unicodedata.category(c) in INVISIBLE_CATEGORIES for c in text
    ):
        raise ValueError("the text shows nothing: it has only whitespace or invisible characters")
    return text


class SessionCreateIn(StrictModel):
    """No options yet; the body may be `{}` or absent."""


class SessionCreated(StrictModel):
    session_id: str = Field(description="unguessable (secrets.token_urlsafe(32)); whoever holds it may join")
    assist_url: str = Field(description="the assistant's page for this session")
    expires_at: str = Field(description="ISO-8601 UTC; renewed by activity, up to the session's maximum age")
    ttl_s: int = Field(description="seconds of inactivity before the session expires")


class MessageIn(StrictModel):
    sender: Sender
    text: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), AfterValidator(visible)
    ]


class MessageOut(StrictModel):
    id: int
    sender: Sender
    text: str
    at: str = Field(description="ISO-8601 UTC")


class ActivityOut(StrictModel):
    type: EventType
    item_id: str | None
    category: str | None
    garment: int | None
    at: str = Field(description="ISO-8601 UTC")
    dwell_s: float | None = Field(None, description="how long the item was looked at (view_item)")


class CartLine(StrictModel):
    item_id: str
    category: str | None
    quantity: int


class InsightOut(StrictModel):
    """What the assistant sees at a glance (service/shopper_insight.py has the rules)."""

    intent: Intent
    reason: str = Field(description="the rule that decided the intent, in words")
    cart: list[CartLine] = Field(description="added minus removed and bought, oldest first")
    returning: bool = Field(description="the shopper's browser has visited before")
    profile: str | None = Field(description="the shopper's style profile in one line; null: none shared")
    opener: str = Field(description="a suggested first message, for the assistant to edit and send")


class ShopperProfileIn(StrictModel):
    """What the shopper page tells its co-viewing session about the shopper: the session keeps the profile's
    one-line summary, never its id; no profile (null) removes it ("forget me")."""

    profile_id: Annotated[str, StringConstraints(max_length=100)] | None = None
    profile: ProfileIn | None = None
    returning: bool = False

    @model_validator(mode="after")
    def _one_profile(self) -> ShopperProfileIn:
        if self.profile_id is not None and self.profile is not None:
            raise ValueError("give profile_id or profile, not both")
        return self


class PushIn(StrictModel):
    item_id: ItemId
    garment: GarmentIndex | None = None
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None


class PushedItem(StrictModel):
    item_id: str
    title: str
    brand: str
    price: float | None
    currency: str
    in_stock: bool
    category: str
    url: str


class PushOut(StrictModel):
    id: int
    item: PushedItem
    garment: int | None
    note: str | None
    at: str = Field(description="ISO-8601 UTC")


class SessionSnapshot(StrictModel):
    session_id: str
    expires_at: str = Field(description="ISO-8601 UTC")
    search: SearchResponse | None = Field(description="the last search attached to the session")
    photo_url: str | None = Field(description="the last search's photo (JPEG, longest side <= 640 px)")
    selected: int | None = Field(description="the garment the shopper selected last")
    messages: list[MessageOut] = Field(description="oldest first; the most recent 100")
    activity: list[ActivityOut] = Field(description="oldest first; the most recent 200")
    pushed: list[PushOut] = Field(description="oldest first; the most recent 50")
    insight: InsightOut = Field(description="intent, cart, returning visitor, profile, a suggested opener")


class SearchShared(StrictModel):
    """Data of the stream's `search` event."""

    search: SearchResponse
    photo_url: str


class EventIn(StrictModel):
    type: EventType
    item_id: ItemId | None = None
    category: Category | None = None
    garment: GarmentIndex | None = None
    session_id: Annotated[str, StringConstraints(max_length=100)] | None = None
    dwell_s: float | None = Field(
        None, ge=0, le=3600, description="view_item only: seconds the shopper looked at the item"
    )
    profile_id: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None,
        description="a stored style profile that learns from this event when it opted in (click, "
        "add_to_cart, purchase, remove_from_cart); 404 profile_not_found if unknown",
    )

    @model_validator(mode="after")
    def _item_for_clicks(self) -> EventIn:
        if self.type != "select_garment" and self.item_id is None:
            raise ValueError(f"a {self.type} event needs an item_id")
        if self.dwell_s is not None and self.type != "view_item":
            raise ValueError("dwell_s belongs to view_item events only")
        return self


class EventAccepted(StrictModel):
    accepted: bool


class CategoryStats(StrictModel):
    searches: int = Field(description="garments of this category searched")
    clicks: int
    add_to_cart: int
    click_through: float = Field(description="clicks / searches; 0 when there were no searches")


class StatsTotals(CategoryStats):
    searches: int = Field(description="search requests")
    garments: int = Field(description="garments found in them")


class StatsOut(StrictModel):
    since: str = Field(description="ISO-8601 UTC: when counting started (the service's start)")
    totals: StatsTotals
    by_category: dict[str, CategoryStats] = Field(
        description='catalogue categories; anything else (and garments without one) under "other"'
    )
