"""Style profiles: the quiz's questions, the stored profiles (FASHION_PROFILES_ENABLED) and what a co-viewing
session is told of the shopper. The state lives in service/profiles.py (or profiles_redis.py)."""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from models.attributes.taxonomy import load_taxonomy
from search.profile import summary
from search.query import style_profile
from search.responses import StrictModel
from service.errors import ProfilesDisabledError
from service.profile_schemas import ProfileBody, ProfileCreated, ProfileOut
from service.profiles import ProfileStore
from service.routes import STOREFRONT_KEY
from service.routes import errors as route_errors
from service.shop_routes import sessions_of
from service.shop_schemas import InsightOut, ShopperProfileIn
from service.shopper_insight import context_json

router = APIRouter()
PROFILE_ERRORS = {
    403: "the shop keeps no style profiles on the server (FASHION_PROFILES_ENABLED): keep it in the browser",
    404: "unknown, expired or forgotten profile (the same answer for all three)",
    503: "the shared state (FASHION_REDIS_URL) is unavailable (Retry-After)",
}
errors = functools.partial(route_errors, descriptions=PROFILE_ERRORS)
SIZES = ["XS", "S", "M", "L", "XL", "XXL"]


class Question(StrictModel):
    id: str
    label: str
    kind: str  # "multi" (pick any of `choices`), "price" (price_min / price_max), "text" (free entries)
    choices: list[str]


class Quiz(StrictModel):
    profiles: str  # "server": POST /v1/profiles keeps them; "browser": send the answers with each search
    questions: list[Question]


def profiles_of(request: Request) -> ProfileStore:
    store: ProfileStore | None = request.app.state.profiles
    if store is None:
        raise ProfilesDisabledError(
            "this shop keeps no style profiles on the server: send the answers as `profile` with a search"
        )
    return store


@router.get("/v1/quiz", response_model=Quiz, dependencies=[STOREFRONT_KEY], responses=errors(401, 429))
def get_quiz(request: Request) -> Quiz:
    """The style quiz's questions (choices from the taxonomy), and where the shop keeps the answers."""
    groups = load_taxonomy().groups

    def values(group: str) -> list[str]:
        return [value.name for value in groups[group].values]

    questions = [
        Question(id="colours", label="Colours you love", kind="multi", choices=values("colour")),
        Question(id="avoid_colours", label="Colours you avoid", kind="multi", choices=values("colour")),
        Question(id="fits", label="Fits you like", kind="multi", choices=values("fit")),
        Question(id="styles", label="Your styles and occasions", kind="multi", choices=values("style")),
        Question(id="price", label="Your usual price range", kind="price", choices=[]),
        Question(id="brands", label="Brands you like", kind="text", choices=[]),
        Question(id="sizes", label="Your sizes", kind="text", choices=SIZES),
    ]
    return Quiz(
        profiles="server" if request.app.state.profiles is not None else "browser", questions=questions
    )


PROFILE_ROUTE: dict[str, Any] = {
    "dependencies": [STOREFRONT_KEY],
    "responses": errors(401, 403, 404, 422, 429, 503),
}


@router.post("/v1/profiles", status_code=201, response_model=ProfileCreated, **PROFILE_ROUTE)
def create_profile(request: Request, body: ProfileBody) -> ProfileCreated:
    """Keep a shopper's quiz answers; `profile_id` on a search applies them. Expires after
    FASHION_PROFILE_TTL_S without use."""
    return profiles_of(request).create(body)


@router.get("/v1/profiles/{profile_id}", response_model=ProfileOut, **PROFILE_ROUTE)
def get_profile(request: Request, profile_id: str) -> ProfileOut:
    """The answers, what was learned, and the one-line summary the assistant sees."""
    return profiles_of(request).get(profile_id)


@router.put("/v1/profiles/{profile_id}", response_model=ProfileOut, **PROFILE_ROUTE)
def replace_profile(request: Request, profile_id: str, body: ProfileBody) -> ProfileOut:
    """New answers; what was learned is kept while `learn` stays true and forgotten when it is false."""
    return profiles_of(request).replace(profile_id, body)


@router.delete("/v1/profiles/{profile_id}", status_code=204, response_class=Response, **PROFILE_ROUTE)
def delete_profile(request: Request, profile_id: str) -> Response:
    """Forget me: the profile and everything learned are deleted at once."""
    profiles_of(request).delete(profile_id)
    return Response(status_code=204)


@router.put(
    "/v1/sessions/{session_id}/profile",
    response_model=InsightOut,
    dependencies=[STOREFRONT_KEY],
    responses=errors(401, 403, 404, 422, 429, 503),
)
def share_profile(request: Request, session_id: str, body: ShopperProfileIn) -> Response:
    """Tell a co-viewing session who the shopper is: their profile's one-line summary (the session keeps
    the line, never the id) and whether they visited before; no profile removes it. Streams get `insight`."""
    sessions = sessions_of(request)
    sessions.require(session_id)
    line = None
    if body.profile_id is not None:
        line = summary(profiles_of(request).style_profile(body.profile_id))
    elif body.profile is not None:
        line = summary(style_profile(body.profile, load_taxonomy()))
    card = sessions.set_shopper(session_id, context_json(line, body.returning))
    return Response(card, media_type="application/json")
