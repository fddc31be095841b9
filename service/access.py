"""Who may call what, and how often: admin and storefront keys (constant-time, never logged) and token-bucket
rate limits per client address, per key and per co-viewing session. Enforced in a middleware, before any body
is read.

- `/v1/admin/...` and `/v1/stats` need `X-Admin-Key` = `admin_key`; with no admin key configured the admin
  API is off.
- `/v1/...` (search, items, sessions, events) needs `X-API-Key` = one of `search_keys` when any are
  configured.
- Every `/v1/...` request takes tokens from its client address's bucket (`rate_per_s`, `burst`), and, when
  its key is valid, also from the key's bucket, and, when its path names a session (`/v1/sessions/{id}/...`),
  from the session's. A storefront key is the same for every shopper of the page (anyone can read it), so
  the key's bucket is the whole shop's: it holds `key_multiple` times the per-address rate and burst (a cap
  on one shop, not on one shopper), and one client, however fast, drains only its own address's bucket. A
  request is charged to all its buckets or, when any is short, to none: a refused request costs nothing, so
  an abuser's 429s do not drain the key's bucket either. A search takes a whole token, anything else
  OTHER_COST (a page's thumbnails and events must not use up a shopper's searches) unless its key is wrong
  (a whole token, from the address only: failed key guesses are limited per address). An event stream pays
  once, when it connects. An empty bucket answers 429 with Retry-After. Every answer of a limited request
  carries `RateLimit-Policy: "<bucket>";q=<burst>;w=<seconds to refill from empty>` and `RateLimit:
  "<bucket>";r=<whole tokens left>;t=<seconds until full>` (IETF draft-ietf-httpapi-ratelimit-headers) for
  its tightest bucket ("address", "key" or "session"; on a 429, the one that refused). Health, readiness,
  metrics, the pages and the docs are neither keyed nor limited.
- The client address is the TCP peer, unless the peer is one of `trusted_proxies`: then it is the right-most
  `X-Forwarded-For` entry that is not itself a trusted proxy (entries to its left were written by the
  client and prove nothing). uvicorn must not rewrite the peer from the header itself (`proxy_headers` off,
  service/server.py). An IPv6 client is its /64 network (one host usually holds a whole /64).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Protocol

from fastapi import FastAPI, Request
from pydantic import SecretStr

from service.errors import AdminDisabledError, RateLimitedError, UnauthorizedError, error_response

ADMIN_PREFIX = "/v1/admin/"
ADMIN_PATHS = frozenset({"/v1/stats"})
SEARCH_PATH = "/v1/search"
BATCH_PATH = "/v1/search/batch"  # one search at the door; `charge_batch` takes the rest once it is read
OTHER_COST = 0.2  # tokens; a search (and a request with a wrong key) costs 1
API_PREFIX = "/v1/"
ADMIN_HEADER = "x-admin-key"
API_KEY_HEADER = "x-api-key"
FORWARDED_FOR_HEADER = "x-forwarded-for"
KEY_MULTIPLE = 20.0  # a key's bucket: this many addresses' worth (Settings.rate_limit_key_multiple)
IPV6_CLIENT_PREFIX = 64
# A session id as SessionStore makes them (secrets.token_urlsafe(32)); other ids get no bucket of their own.
_SESSION_PATH = re.compile(r"/v1/sessions/([A-Za-z0-9_-]{43})(?:/|$)")


class Limiter(Protocol):
    """RateLimiter, or its shared form (service/rate_limits_redis.py)."""

    def admit(self, charges: Iterable[Charge]) -> Quota | None: ...

    async def admit_async(self, charges: Iterable[Charge]) -> Quota | None: ...


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Charge(NamedTuple):
    """`cost` tokens from `bucket`, whose rate and burst are `scale` times the limiter's."""

    bucket: str
    cost: float = 1.0
    scale: float = 1.0


class Quota(NamedTuple):
    """A bucket as a request left it, for the RateLimit-Policy and RateLimit headers (IETF
    draft-ietf-httpapi-ratelimit-headers): `tokens` left after the request (a refused one took none),
    `wait_s` until there are enough (0.0 when allowed)."""

    name: str  # the kind of bucket ("address", "key", "session"), never whose it is
    capacity: float
    rate_per_s: float
    tokens: float
    wait_s: float

    @property
    def full_in_s(self) -> int:
        """Whole seconds until the bucket is full again."""
        return max(0, math.ceil((self.capacity - self.tokens) / self.rate_per_s - 1e-9))

    def headers(self) -> dict[str, str]:
        """RateLimit-Policy `"name";q=<burst>;w=<seconds to refill from empty>` and RateLimit
        `"name";r=<whole tokens left>;t=<seconds until full>`."""
        window_s = math.ceil(self.capacity / self.rate_per_s - 1e-9)
        burst = math.floor(self.capacity + 1e-9)
        left = max(0, math.floor(self.tokens + 1e-9))
        return {
            "RateLimit-Policy": f'"{self.name}";q={burst};w={window_s}',
            "RateLimit": f'"{self.name}";r={left};t={self.full_in_s}',
        }


RATE_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit")
_POLICY_NAMES = {"addr": "address", "key": "key", "session": "session"}


def policy_name(bucket: str) -> str:
    """A bucket's policy in the headers: its kind ("addr:1.2.3.4" -> "address"), never the address or key."""
    kind = bucket.split(":", 1)[0]
    return _POLICY_NAMES.get(kind, kind)


def checked_bucket(rate_per_s: float, burst: int) -> tuple[float, int]:
    """A token bucket's (rate, burst); ValueError unless the rate is positive and the burst at least 1."""
    if rate_per_s <= 0 or burst < 1:
        raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s} and {burst}")
    return rate_per_s, burst


class RateLimiter:
    """Token buckets keyed by caller: `rate_per_s` sustained, `burst` at once (times a charge's `scale`).
    Holds at most `max_callers` buckets (least recently used dropped first), so a flood of new addresses
    cannot grow memory."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        max_callers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s, self.burst = checked_bucket(rate_per_s, burst)
        self._max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # caller -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, caller: str, cost: float = 1.0) -> float:
        """Take `cost` tokens: 0.0 when allowed, else the seconds until there are enough."""
        return self.take_all([Charge(caller, cost)])

    def take_all(self, charges: Iterable[Charge]) -> float:
        """All or nothing: 0.0 when every bucket had enough (each is charged), else the seconds until they all
        will and no bucket is charged (nor created)."""
        quota = self.admit(charges)
        return 0.0 if quota is None else quota.wait_s

    def admit(self, charges: Iterable[Charge]) -> Quota | None:
        """take_all, answering the bucket that decided (None for no charges): when refused, the one that
        takes longest to have enough; when allowed, the one with the fewest tokens left."""
        with self._lock:
            now = self._clock()
            seen: list[tuple[str, float, Quota]] = []
            for bucket, cost, scale in charges:
                capacity, rate = self.burst * scale, self.rate_per_s * scale
                tokens, at = self._buckets.get(bucket, (capacity, now))
                tokens = min(capacity, tokens + (now - at) * rate)
                wait = (cost - tokens) / rate if tokens < cost - 1e-9 else 0.0  # five 0.2s make a whole token
                seen.append((bucket, cost, Quota(policy_name(bucket), capacity, rate, tokens, wait)))
            refused = any(quota.wait_s > 0 for _, _, quota in seen)
            if not refused:
                seen = [
                    (bucket, cost, quota._replace(tokens=quota.tokens - cost)) for bucket, cost, quota in seen
                ]
            for bucket, _, quota in seen:
                if not refused:
                    self._buckets[bucket] = (quota.tokens, now)
                if bucket in self._buckets:
                    self._buckets.move_to_end(
                        bucket
                    )  # a refused caller stays recent: not dropped for a fresh one
            while len(self._buckets) > self._max_callers:
                self._buckets.popitem(last=False)
        return deciding([quota for _, _, quota in seen])

    async def admit_async(self, charges: Iterable[Charge]) -> Quota | None:
        """admit, for the event loop (in memory: no wait); a shared limiter waits for Redis here."""
        return self.admit(charges)

    def __len__(self) -> int:
        return len(self._buckets)


def deciding(quotas: Sequence[Quota]) -> Quota | None:
    """The bucket that decided a request (None for no charges): when any refused, the one that takes longest
    to have enough; when allowed, the one with the fewest tokens left."""
    if not quotas:
        return None
    if any(quota.wait_s > 0 for quota in quotas):
        return max(quotas, key=lambda quota: quota.wait_s)
    return min(quotas, key=lambda quota: (quota.tokens, -quota.full_in_s))


def key_matches(given: str, keys: Sequence[SecretStr]) -> bool:
    """Constant-time comparison against every configured key (no early exit that would reveal which)."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_bytes, key.get_secret_value().encode("utf-8"))
    return found


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """IPs and CIDRs ("10.0.0.7", "10.0.0.0/8", "fd00::/8") as networks; ValueError names a bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {entry!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def parse_address(text: str) -> IPAddress | None:
    """An address as a peer or X-Forwarded-For entry gives it ("1.2.3.4", "1.2.3.4:80", "::1", "[::1]:80");
    None when it is not one ("unknown", "_hidden", garbage)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; IPv6 has at least two colons
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork] = ()
) -> str:
    """Who is asking, as a bucket (and quota) name: the TCP `peer`, or, when the peer is a trusted proxy, the
    right-most X-Forwarded-For entry (the header's lines, in order) that is not a trusted proxy. A malformed
    entry ends the walk at the trusted hop before it (what lies left of it cannot be trusted); so does the
    header's end (the request came from the proxies themselves). An IPv6 client is its /64."""
    if peer is None:
        return "unknown"
    address = parse_address(peer)
    if address is None:
        return peer  # not IP (a test client, a Unix socket): its own name
    if is_trusted(address, trusted_proxies):
        entries = [entry for line in forwarded_for for entry in line.split(",")]
        for entry in reversed(entries):
            hop = parse_address(entry)
            if hop is None:
                break
            address = hop
            if not is_trusted(hop, trusted_proxies):
                break
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def is_trusted(address: IPAddress, trusted_proxies: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted_proxies)


def client_address_of(request: Request) -> str:
    """The request's client address as the access middleware found it (the TCP peer where it did not run)."""
    found = getattr(request.state, "client_address", None)
    if isinstance(found, str):
        return found
    return client_address(request.client.host if request.client else None, ())


def key_bucket(key: str) -> str:
    """A valid key's bucket: its fingerprint, never the key itself."""
    return "key:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def charges_for(
    path: str, address: str, key: str | None, cost: float, key_multiple: float = KEY_MULTIPLE
) -> list[Charge]:
    """The buckets a request pays into: its address's; a valid `key`'s (unless key_multiple is 0); the
    session's its path names (a valid or unneeded key only)."""
    charges = [Charge("addr:" + address, cost)]
    if key is not None and key_multiple > 0:
        charges.append(Charge(key_bucket(key), cost, key_multiple))
    session = _SESSION_PATH.match(path)
    if session is not None:
        fingerprint = hashlib.sha256(session.group(1).encode("ascii")).hexdigest()[:16]
        charges.append(Charge("session:" + fingerprint, cost))
    return charges


def charge_batch(request: Request, searches: int) -> None:
    """A batch of `searches` costs what as many searches cost: the door took one, this takes the others
    from the same buckets, or raises RateLimitedError (429) with nothing run."""
    limiter, charges = getattr(request.state, "rate_charges", (None, []))
    if limiter is None or searches <= 1:
        return
    extra = [charge._replace(cost=charge.cost * (searches - 1)) for charge in charges]
    quota = limiter.admit(extra)
    if quota is not None and quota.wait_s <= 0:
        request.state.rate_quota = quota  # the answer's RateLimit headers say what is left after it
    if quota is not None and quota.wait_s > 0:
        raise RateLimitedError(
            f"a batch of {searches} searches costs {searches} requests; retry in {quota.wait_s:.1f} s",
            max(1, math.ceil(quota.wait_s)),
        )


def install_access_control(
    app: FastAPI,
    admin_key: SecretStr | None,
    search_keys: Sequence[SecretStr],
    limiter: Limiter | None,
    trusted_proxies: Iterable[str] = (),
    key_multiple: float = KEY_MULTIPLE,
) -> None:
    proxies = parse_networks(trusted_proxies)

    @app.middleware("http")
    async def _access(request: Request, call_next):
        path = request.url.path
        if not path.startswith(API_PREFIX) or request.method == "OPTIONS":
            return await call_next(request)
        address = client_address(
            request.client.host if request.client else None,
            request.headers.getlist(FORWARDED_FOR_HEADER),
            proxies,
        )
        request.state.client_address = address
        is_admin = path.startswith(ADMIN_PREFIX) or path in ADMIN_PATHS
        keys: Sequence[SecretStr] = ([admin_key] if admin_key else []) if is_admin else search_keys
        given = request.headers.get(ADMIN_HEADER if is_admin else API_KEY_HEADER)
        valid = given is not None and key_matches(given, keys)
        quota = None
        if limiter is not None:
            if keys and not valid:  # a guess: a whole token, from the address only
                charges = [Charge("addr:" + address, 1.0)]
            else:
                cost = 1.0 if path in (SEARCH_PATH, BATCH_PATH) else OTHER_COST
                charges = charges_for(path, address, given if valid else None, cost, key_multiple)
            quota = await limiter.admit_async(charges)
            request.state.rate_charges = (limiter, charges)
        if quota is not None and quota.wait_s > 0:
            message = f"too many requests; retry in {quota.wait_s:.1f} s"
            response = error_response(request, RateLimitedError(message, max(1, math.ceil(quota.wait_s))))
        elif is_admin and admin_key is None:
            message = "the admin API is off: the service has no admin key set"
            response = error_response(request, AdminDisabledError(message))
        elif keys and not valid:
            response = error_response(request, UnauthorizedError("X-Admin-Key" if is_admin else "X-API-Key"))
        else:
            response = await call_next(request)
        if quota is not None:  # on every answer of a limited route, the 429 included
            response.headers.update(getattr(request.state, "rate_quota", quota).headers())
        return response
