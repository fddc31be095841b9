"""Request and response models of the style-profile routes (`/v1/profiles`)."""

from __future__ import annotations

from pydantic import Field

from search.request_body import PROFILE_EXAMPLE, ProfileIn
from search.responses import StrictModel


class ProfileBody(ProfileIn):
    """The quiz's answers, and whether the profile may learn from the shopper's clicks (opt-in)."""

    model_config = {"json_schema_extra": {"examples": [{**PROFILE_EXAMPLE, "learn": True}]}}

    learn: bool = Field(
        False,
        description="learn colour, brand, style, fit and price preferences from the clicks and add-to-carts "
        "sent with this profile_id (POST /v1/events); false forgets what was learned",
    )


class ProfileCreated(StrictModel):
    profile_id: str = Field(
        description="unguessable (secrets.token_urlsafe(32)); whoever holds it may use it"
    )
    expires_at: str = Field(description="ISO-8601 UTC; renewed whenever the profile is saved or used")


class ProfileOut(ProfileBody):
    profile_id: str
    learned: dict[str, dict[str, float]] = Field(
        description="what clicks taught: dimension (colour, style, fit, brand) -> value -> weight "
        "(negative: pushed down)"
    )
    learned_price: float | None = Field(description="the learned price (an average of the clicked prices)")
    summary: str = Field(description="the profile in one line, as the assistant sees it")
    expires_at: str = Field(description="ISO-8601 UTC")
