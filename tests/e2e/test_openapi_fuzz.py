"""Fuzz the published OpenAPI schema with schemathesis against a real `fashion-search serve` process.

Every operation, with valid keys and without them, must answer without a server error (5xx), and no answer
may name a path of the server's file system. Generation is derandomised, so every run sends the same cases.

Half the generated session ids name a live co-viewing session, except for the event stream's: a live stream
stays open until its session expires, so the stream is fuzzed with ids that answer at once (404, 401, 429);
tests/e2e/test_coview_stream.py reads live streams.

The cases come from schemathesis's Python API (`APIOperation.as_strategy` under Hypothesis's `@given`) and
are sent with `Case.call_and_validate`. `schemathesis.pytest.from_fixture`, the loader for a schema that only
exists once a fixture has started the server, does not work with pytest 9.2: it renames tests through
`request.node._nodeid`, which pytest 9.2 no longer has.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, HookContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.e2e.serving import ROOT, cli, running_server, tiny_model_env
from tests.helpers import CATEGORIES, COLOURS, garment_image, jpeg_bytes, write_catalog

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

ADMIN_KEY = "fuzz-admin-key-0123456789"
SEARCH_KEY = "fuzz-storefront-key-0123456789"
KEYS = {"X-API-Key": SEARCH_KEY, "X-Admin-Key": ADMIN_KEY}
SWAPPED_KEYS = {"X-API-Key": ADMIN_KEY, "X-Admin-Key": SEARCH_KEY}  # each key in the other's header
N_ITEMS = 8
# Operation -> (examples to generate, fewest that must have been sent). An operation without parameters has
# one distinct request, and Hypothesis stops once it has tried it.
OPERATIONS = {
    "POST /v1/search": (100, 70),
    "POST /v1/search/batch": (40, 20),
    "GET /v1/items/{item_id}": (60, 40),
    "GET /v1/items/{item_id}/image": (60, 40),
    "POST /v1/admin/reload": (20, 1),
    "POST /v1/admin/items": (40, 20),
    "POST /v1/admin/items/delete": (40, 20),
    "POST /v1/sessions": (20, 2),
    "GET /v1/sessions/{session_id}": (40, 20),
    "GET /v1/sessions/{session_id}/photo": (40, 20),
    "GET /v1/sessions/{session_id}/stream": (30, 15),
    "POST /v1/sessions/{session_id}/messages": (60, 40),
    "POST /v1/sessions/{session_id}/push": (60, 40),
    "POST /v1/events": (60, 40),
    "GET /v1/quiz": (20, 1),
    "POST /v1/profiles": (40, 20),
    "GET /v1/profiles/{profile_id}": (40, 20),
    "PUT /v1/profiles/{profile_id}": (40, 20),
    "PUT /v1/sessions/{session_id}/profile": (40, 20),
    "DELETE /v1/profiles/{profile_id}": (30, 15),
    "GET /v1/stats": (20, 1),
    "GET /healthz": (20, 1),
    "GET /readyz": (20, 1),
}
ANONYMOUS_EXAMPLES = 10  # per /v1/ operation, each sent with no key and with the keys swapped
Check = Callable[[CheckContext, Response, Case], None]

# Search options that the service accepts. Random strings are almost never valid JSON and random numbers are
# mostly out of range, so schemathesis alone seldom gets past option parsing to the search itself.
COLOUR_NAMES = sorted(COLOURS)
WORDS = st.sampled_from([*CATEGORIES, *COLOUR_NAMES, "Testwear", "striped", "colour", "pattern", "women", ""])
VALID_OPTIONS = {
    "top_k": st.integers(1, 20),
    "category": st.sampled_from(CATEGORIES),
    "text": st.sampled_from(["in red", "in blue, not striped", "no pattern", "red red red red", " "]),
    "filters": st.fixed_dictionaries(
        {},
        optional={
            "category": st.sampled_from(CATEGORIES),
            "brand": st.sampled_from(["Testwear", "nobody"]),
            "price_min": st.floats(0, 20),
            "in_stock": st.booleans(),
            "attributes": st.dictionaries(st.sampled_from(["colour", "pattern"]), WORDS, max_size=2),
        },
    ).map(json.dumps),
    "weights": st.dictionaries(st.sampled_from(["colour", "pattern", "category"]), st.floats(0, 10)).map(
        json.dumps
    ),
    "attribute_weight": st.floats(0, 1),
    "profile": st.fixed_dictionaries(
        {},
        optional={"brands": st.lists(WORDS, max_size=3), "colours": st.lists(st.sampled_from(COLOUR_NAMES))},
    ).map(json.dumps),
}
# ... and for one option at a time, a value that may not fit: JSON of the right keys with any values (NaN and
# Infinity included), numbers of any size, any text.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | WORDS | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WORDS, inner, max_size=3),
    max_leaves=6,
)


def json_object(*keys: str) -> st.SearchStrategy[str]:
    names = st.sampled_from(keys) | st.text(max_size=4)
    return st.dictionaries(names, JSON_VALUES, max_size=3).map(json.dumps)


ODD_OPTIONS = {
    "top_k": st.integers(),
    "category": st.text(),
    "text": st.text(),
    "filters": json_object("category", "brand", "price_min", "price_max", "in_stock", "gender", "attributes"),
    "weights": json_object("category", "colour", "pattern", "fit", "material", "length"),
    "attribute_weight": st.floats(),
    "profile": json_object("brands", "colours", "price_min", "price_max"),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def env(workdir: Path) -> dict[str, str]:
    (workdir / "model").mkdir()
    return {
        **tiny_model_env(workdir / "model"),
        "FASHION_ADMIN_KEY": ADMIN_KEY,
        "FASHION_SEARCH_KEYS": json.dumps([SEARCH_KEY]),
        "FASHION_RATE_LIMIT_PER_S": "0",  # no throttling while fuzzing; the 429 test turns it on
        "FASHION_IMAGE_ROOT": str(workdir / "catalogue"),
        "FASHION_PROFILES_ENABLED": "true",
        "FASHION_PROFILES_PATH": str(workdir / "profiles.sqlite"),
    }


@pytest.fixture(scope="module")
def index(workdir: Path, env: dict[str, str]) -> Path:
    feed = write_catalog(workdir / "catalogue", N_ITEMS)
    result = cli("index", "build", "--catalog", str(feed), "--out", str(workdir / "index"), env=env)
    assert result.returncode == 0, result.stderr
    return workdir / "index"


@pytest.fixture(scope="module")
def server_log(workdir: Path) -> Path:
    return workdir / "server.log"


@pytest.fixture(scope="module")
def server(index: Path, env: dict[str, str], server_log: Path) -> Iterator[str]:
    with running_server(index, env, server_log) as base:
        yield base


@pytest.fixture(scope="module")
def schema(server: str) -> OpenApiSchema:
    """The schema the running server publishes, with generation steered half the time to real data."""
    loaded = schemathesis.openapi.from_url(f"{server}/openapi.json")
    created = httpx.post(f"{server}/v1/sessions", headers=KEYS, timeout=30)
    assert created.status_code == 201, created.text
    profile = httpx.post(f"{server}/v1/profiles", headers=KEYS, json={"colours": ["red"]}, timeout=30)
    assert profile.status_code == 201, profile.text
    steer_towards_real_data(loaded, created.json()["session_id"], profile.json()["profile_id"])
    return loaded


@pytest.fixture(scope="module")
def checks(workdir: Path) -> list[Check]:
    """`not_a_server_error`, and a check of our own: no answer names a path of the server."""
    secrets = sorted({str(workdir), str(workdir.resolve()), str(ROOT)})

    def no_server_paths(ctx: CheckContext, response: Response, case: Case) -> None:
        text = response.content.decode("utf-8", "replace") + repr(response.headers)
        leaked = [secret for secret in secrets if secret in text]
        assert not leaked, f"the response names server paths {leaked}: {text[:300]!r}"

    return [not_a_server_error, no_server_paths]


@pytest.fixture(scope="module")
def tally(record_testsuite_property: Callable[[str, object], None]) -> Iterator[Counter[str]]:
    """Requests sent, per operation and kind of run; the counts go to the log and the JUnit report."""
    sent: Counter[str] = Counter()
    yield sent
    log.info("OpenAPI fuzzing sent %d requests: %s", sum(sent.values()), dict(sent))
    record_testsuite_property("openapi_fuzz_requests", sum(sent.values()))
    for what, count in sent.items():
        record_testsuite_property(f"openapi_fuzz_requests {what}", count)


def steer_towards_real_data(schema: OpenApiSchema, session_id: str, profile_id: str) -> None:
    """Random ids never name an item, a session or a profile and random bytes never decode, so half the time
    a case gets a catalogue id, a live session's or profile's id, or a real JPEG with the generated options,
    valid options or valid ones but one: fuzzing then also reaches the code behind them (item lookup, image
    files, sessions, profiles, detection, ranking)."""
    ids = [f"item-{n:04d}" for n in range(N_ITEMS)]
    photo = jpeg_bytes(garment_image(3), quality=90)
    valid = st.fixed_dictionaries({}, optional={**VALID_OPTIONS, "session_id": st.just(session_id)})
    real_ids = {
        "item_id": st.sampled_from(ids),
        "session_id": st.just(session_id),
        "profile_id": st.just(profile_id),
    }

    @st.composite
    def one_odd(draw: st.DrawFn) -> dict[str, Any]:
        name = draw(st.sampled_from(sorted(ODD_OPTIONS)))
        return {**draw(valid), name: draw(ODD_OPTIONS[name])}

    def with_real_ids(values: Any) -> st.SearchStrategy[Any]:
        """`values` as generated, or with its item and session ids (where it has them) real ones."""
        if not isinstance(values, dict) or not set(values) & set(real_ids):
            return st.just(values)
        real = st.fixed_dictionaries({name: real_ids[name] for name in values if name in real_ids})
        return st.one_of(st.just(values), real.map(lambda found: {**values, **found}))

    @schema.hook
    def flatmap_path_parameters(context: HookContext, path_parameters: Any) -> st.SearchStrategy[Any]:
        operation = context.operation
        if operation is not None and operation.path.endswith("/stream"):
            return st.just(path_parameters)  # a live stream would stay open: see the module's docstring
        return with_real_ids(path_parameters)

    @schema.hook
    def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
        if not (isinstance(body, dict) and "image" in body):
            return with_real_ids(body)
        if isinstance(body["image"], dict):  # the JSON form: its image, or a real photo as base64
            real = {"base64": base64.b64encode(photo).decode()}
            return st.one_of(st.just(body), st.just({**body, "image": real}))
        with_photo = st.one_of(st.just(body), valid, one_odd()).map(lambda form: {**form, "image": photo})
        return st.one_of(st.just(body), with_photo)


def json_safe(case: Case) -> Case:
    """A JSON body whose `image` the steering hook made a real photo (it cannot tell the form's body from a
    negative JSON one whose image is not an object) gets the photo as `{"base64": ...}`: JSON has no bytes."""
    body = case.body
    if (
        case.media_type == "application/json"
        and isinstance(body, dict)
        and isinstance(body.get("image"), bytes)
    ):
        case.body = {**body, "image": {"base64": base64.b64encode(body["image"]).decode()}}
    return case


def fuzz(schema: OpenApiSchema, label: str, max_examples: int, send: Callable[[Case], None]) -> int:
    """Call `send` on up to `max_examples` derandomised cases of one operation, positive and negative (they
    break the schema); return how many it was called on."""
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"the schema has no operation {label}"
    strategy = st.one_of([operation.as_strategy(generation_mode=mode) for mode in GenerationMode])
    sent = 0

    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Case) -> None:
        nonlocal sent
        sent += 1
        send(json_safe(case))

    run()
    return sent


def outcome(response: Response) -> str:
    """The status and, for an error, its code: "200", "422 invalid_filter"."""
    if response.status_code < 400:
        return str(response.status_code)
    try:
        return f"{response.status_code} {response.json()['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} (not an error body of ours)"


def first_traceback(server_log: Path) -> str:
    """The server log from its first traceback on (at most 3,000 characters), or "" when it has none."""
    text = server_log.read_text(encoding="utf-8")
    start = text.find("Traceback")
    return "" if start < 0 else text[start : start + 3000]


def test_schema_lists_the_fuzzed_operations(schema: OpenApiSchema) -> None:
    """A new operation must be added to OPERATIONS, or it would never be fuzzed."""
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize("label", list(OPERATIONS))
def test_no_server_errors_with_keys(
    label: str,
    schema: OpenApiSchema,
    checks: list[Check],
    server_log: Path,
    tally: Counter[str],
) -> None:
    max_examples, at_least = OPERATIONS[label]
    outcomes: Counter[str] = Counter()

    def send(case: Case) -> None:
        response = case.call_and_validate(headers=KEYS, checks=checks, timeout=30)
        outcomes[outcome(response)] += 1

    sent = fuzz(schema, label, max_examples, send)
    tally[label] += sent
    log.info("%s: %d requests, %s", label, sent, dict(sorted(outcomes.items())))
    assert sent >= at_least, f"only {sent} requests sent for {label}"
    traceback = first_traceback(server_log)
    assert not traceback, f"the server logged an exception:\n{traceback}"


@pytest.mark.parametrize("label", [label for label in OPERATIONS if label.split()[1].startswith("/v1/")])
def test_without_valid_keys_is_401(
    label: str,
    schema: OpenApiSchema,
    checks: list[Check],
    tally: Counter[str],
) -> None:
    """No key, or each key in the other's header: 401 before the request is even parsed, never 5xx."""

    def send(case: Case) -> None:
        for headers in ({}, SWAPPED_KEYS):
            response = case.call(headers=headers, timeout=30)
            case.validate_response(response, checks=checks)
            assert response.status_code == 401, (sorted(headers), response.status_code, response.text)

    sent = 2 * fuzz(schema, label, ANONYMOUS_EXAMPLES, send)
    tally[f"{label} without valid keys"] += sent
    log.info("%s without valid keys: %d requests, all 401", label, sent)


def test_rate_limited_requests_are_429_not_5xx(
    workdir: Path, index: Path, env: dict[str, str], checks: list[Check], tally: Counter[str]
) -> None:
    """With a bucket of 2 that refills once a minute, fuzzed requests soon get 429 with Retry-After."""
    limited_env = {**env, "FASHION_RATE_LIMIT_PER_S": str(1 / 60), "FASHION_RATE_LIMIT_BURST": "2"}
    outcomes: Counter[str] = Counter()

    def send(case: Case) -> None:
        response = case.call_and_validate(headers=KEYS, checks=checks, timeout=30)
        outcomes[outcome(response)] += 1
        if response.status_code == 429:
            assert int(response.headers["retry-after"][0]) >= 1  # schemathesis lower-cases header names

    with running_server(index, limited_env, workdir / "limited-server.log") as base:
        limited = schemathesis.openapi.from_url(f"{base}/openapi.json")
        for label in ("POST /v1/search", "GET /v1/items/{item_id}"):
            tally[f"{label} rate limited"] += fuzz(limited, label, 10, send)
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # health is never limited
    log.info("rate limited: %s", dict(sorted(outcomes.items())))
    assert outcomes["429 rate_limited"] >= 10
