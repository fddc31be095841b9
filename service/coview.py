"""Co-viewing sessions: a shopper's last search, messages, pushed products and activity, shared live with a
sales assistant over server-sent events.

Sessions live in this process (with FASHION_REDIS_URL, in the Redis every replica shares instead:
service/coview_redis.py, which behaves the same) and are bounded everywhere: at most `max_sessions`, each
keeping the most recent MAX_MESSAGES / MAX_ACTIVITY / MAX_PUSHES entries, one downscaled search photo and
MAX_STREAMS open streams. A session expires after `ttl_s` without activity (writes renew it; reads do not)
and `max_age_s` after creation; expired sessions are swept lazily (when a session is created, and by their
own streams) and answer exactly like ids that never existed.

Nobody can take every session: one client address holds at most `max_per_client` live sessions (429
too_many_sessions), and a full store first evicts the least recently active session that never had a search
and has been idle for `evict_idle_s` (its streams get `expired`), before answering 503 sessions_full.

What a session holds is kept as the JSON it is sent as (the last search's response, messages, activity,
pushes), not as pydantic objects, which take 5-6 times as much memory. Measured with tracemalloc: a session
with a search of 4 garments x 10 matches (ten attributes each) and its photo (~55 KB) holds ~150 KB (as
objects: ~510 KB); x 100 matches (max_top_k) ~720 KB (~4.1 MB); with its 100 messages, 200 activity entries
and 50 pushes full, ~200 KB (~810 KB). tests/service/test_coview.py checks it.

Routes run in the thread pool and streams on the event loop: every change happens under one lock, and its
event reaches each stream's queue through `loop.call_soon_threadsafe`, in the order of the changes. The
snapshot a stream starts with is taken under the same lock as its subscription, so no event is lost or
repeated between the two. A stream that falls MAX_PENDING_FRAMES behind is ended (the page reconnects).
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from search.responses import SearchResponse
from service.coview_session import END, TIMEOUT, Session, Subscriber, search_event_data, sse_frame
from service.errors import (
    PhotoNotFoundError,
    SessionNotFoundError,
    SessionsFullError,
    TooManySessionsError,
    TooManyStreamsError,
)
from service.shop_schemas import (
    ActivityOut,
    EventType,
    MessageOut,
    PushedItem,
    PushOut,
    Sender,
    SessionCreated,
)

log = logging.getLogger(__name__)
MAX_STREAMS = 8  # per session
PHOTO_MAX_SIDE = 640
PHOTO_QUALITY = 80
PING_FRAME = ": ping\n\n"
EVICT_IDLE_S = 60.0  # a session without a search may be evicted (from a full store) after this long idle


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def session_photo(picture: Image.Image) -> bytes:
    """The upright search photo as a JPEG no larger than PHOTO_MAX_SIDE on its longest side."""
    small = picture.copy()
    small.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
    out = io.BytesIO()
    small.convert("RGB").save(out, format="JPEG", quality=PHOTO_QUALITY)
    return out.getvalue()


def session_created(session_id: str, expires_at: float, ttl_s: float) -> SessionCreated:
    return SessionCreated(
        session_id=session_id,
        assist_url=f"/assist/{session_id}",
        expires_at=iso(expires_at),
        ttl_s=int(ttl_s),
    )


def too_many_sessions(count: int, wait_s: float) -> TooManySessionsError:
    """A client at its quota of `count` sessions, the first of which expires in `wait_s`."""
    return TooManySessionsError(
        f"this client already holds {count} co-viewing sessions, its limit; retry later",
        retry_after_s=max(1, math.ceil(wait_s)),
    )


def sessions_full(max_sessions: int, wait_s: float) -> SessionsFullError:
    """A full store that has room again in `wait_s`."""
    return SessionsFullError(
        f"the service holds its limit of {max_sessions} co-viewing sessions; retry later",
        retry_after_s=max(1, math.ceil(wait_s)),
    )


class SessionLimits:
    """What a session store is told, in one process or in Redis (service/coview_redis.py)."""

    def __init__(
        self,
        ttl_s: float,
        max_age_s: float,
        max_sessions: int,
        ping_s: float = 15.0,
        clock: Callable[[], float] = time.time,
        evict_idle_s: float = EVICT_IDLE_S,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self.ping_s = ping_s
        self.clock = clock
        self.evict_idle_s = evict_idle_s


class SessionStore(SessionLimits):
    def __init__(self, *limits: Any, **options: Any) -> None:
        """SessionLimits' arguments."""
        super().__init__(*limits, **options)
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently active first
        self._per_client: Counter[str] = Counter()  # live sessions by the address that created them
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    async def start(self) -> None:
        """Nothing to start in one process (the lifespan calls it; the Redis store starts its listener)."""

    async def aclose(self) -> None:
        """Nothing to close in one process."""

    def create(self, client: str | None = None, max_per_client: int | None = None) -> SessionCreated:
        """A new session for `client` (an address), which may hold at most `max_per_client` live ones (None:
        no quota). A full store first evicts its least recently active idle session without a search."""
        with self._lock:
            now = self.clock()
            self._sweep(now)
            if (
                client is not None
                and max_per_client is not None
                and self._over_quota(client, max_per_client, now)
            ):
                own = [s for s in self._sessions.values() if s.client == client]
                soonest = min((self._expires_at(s) for s in own), default=now)
                raise too_many_sessions(len(own), soonest - now)
            if len(self._sessions) >= self.max_sessions and not self._evict_idle(now):
                raise sessions_full(self.max_sessions, self._next_free_at() - now)
            session = Session(secrets.token_urlsafe(32), created_at=now, active_at=now, client=client)
            self._sessions[session.session_id] = session
            if client is not None:
                self._per_client[client] += 1
            expires_at = self._expires_at(session)
        return session_created(session.session_id, expires_at, self.ttl_s)

    def require(self, session_id: str) -> None:
        """Raise SessionNotFoundError unless the session is live."""
        with self._lock:
            self._live(session_id, self.clock())

    def snapshot(self, session_id: str) -> str:
        """The session's SessionSnapshot, as JSON."""
        with self._lock:
            return self._snapshot_json(self._live(session_id, self.clock()))

    def photo(self, session_id: str) -> bytes:
        with self._lock:
            photo = self._live(session_id, self.clock()).photo
        if photo is None:
            raise PhotoNotFoundError("the session has no search photo yet")
        return photo

    def attach_search(self, session_id: str, photo: bytes, response: SearchResponse) -> bool:
        """Keep the search (and its photo) as the session's last and tell the streams; False when the session
        expired while the search ran."""
        search_json = response.model_dump_json()  # outside the lock: it may be large
        with self._lock:
            try:
                session = self._touch(session_id)
            except SessionNotFoundError:
                return False
            session.search_json, session.photo, session.selected = search_json, photo, None
            session.photo_version += 1
            self._publish(session, sse_frame("search", search_event_data(search_json, session.photo_url)))
        return True

    def add_message(self, session_id: str, sender: Sender, text: str) -> MessageOut:
        with self._lock:
            session = self._touch(session_id)
            session.last_id += 1
            message = MessageOut(id=session.last_id, sender=sender, text=text, at=iso(session.active_at))
            message_json = message.model_dump_json()
            session.messages.append(message_json)
            self._publish(session, sse_frame("message", message_json))
        return message

    def add_push(self, session_id: str, item: PushedItem, garment: int | None, note: str | None) -> PushOut:
        with self._lock:
            session = self._touch(session_id)
            session.last_id += 1
            push = PushOut(
                id=session.last_id, item=item, garment=garment, note=note, at=iso(session.active_at)
            )
            push_json = push.model_dump_json()
            session.pushed.append(push_json)
            self._publish(session, sse_frame("push", push_json))
        return push

    def add_activity(
        self,
        session_id: str,
        event_type: EventType,
        item_id: str | None,
        category: str | None,
        garment: int | None,
        dwell_s: float | None = None,
    ) -> ActivityOut:
        """Add a shopper's event to the activity and tell the streams: the entry, then the new insight."""
        with self._lock:
            session = self._touch(session_id)
            activity = ActivityOut(
                type=event_type,
                item_id=item_id,
                category=category,
                garment=garment,
                at=iso(session.active_at),
                dwell_s=dwell_s,
            )
            activity_json = activity.model_dump_json()
            session.activity.append(activity_json)
            if event_type == "select_garment":
                session.selected = garment
            self._publish(session, sse_frame("activity", activity_json))
            self._publish(session, sse_frame("insight", session.insight_json()))
        return activity

    def set_shopper(self, session_id: str, shopper_json: str) -> str:
        """Keep what the shopper page says of the shopper (shopper_insight.context_json) and tell the
        streams; the new insight, as JSON."""
        with self._lock:
            session = self._touch(session_id)
            session.shopper = shopper_json
            card = session.insight_json()
            self._publish(session, sse_frame("insight", card))
        return card

    def subscribe(self, session_id: str, loop: asyncio.AbstractEventLoop) -> tuple[Subscriber, str]:
        """A new stream of the session's events, and its first frame: the snapshot, taken at that moment."""
        with self._lock:
            session = self._live(session_id, self.clock())
            if len(session.subscribers) >= MAX_STREAMS:
                raise TooManyStreamsError(f"the session already has {MAX_STREAMS} open streams")
            subscriber = Subscriber(session, loop)
            session.subscribers.append(subscriber)
            snapshot = self._snapshot_json(session)
        return subscriber, sse_frame("snapshot", snapshot)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            if subscriber in subscriber.session.subscribers:
                subscriber.session.subscribers.remove(subscriber)

    async def frames(self, subscriber: Subscriber, first: str) -> AsyncIterator[str]:
        """The text of one stream: `first`, then the session's events with a ping when idle, until the
        session expires (an `expired` event), the store closes its streams, or the client goes (the caller
        cancels)."""
        try:
            yield first
            while True:
                frame = await subscriber.next(min(self.ping_s, self._seconds_left(subscriber.session)))
                if frame is END:
                    return
                if frame != TIMEOUT:
                    yield frame
                elif not self._expire_if_due(subscriber.session):  # else the `expired` frame is on its way
                    yield PING_FRAME
        finally:
            self.unsubscribe(subscriber)

    def close_streams(self) -> None:
        """End every open stream (the service is stopping); the sessions stay."""
        with self._lock:
            subscribers = [s for session in self._sessions.values() for s in session.subscribers]
        for subscriber in subscribers:
            subscriber.offer(END)

    def open_streams(self) -> int:
        with self._lock:
            return sum(len(session.subscribers) for session in self._sessions.values())

    # Everything below runs under self._lock.

    def _live(self, session_id: str, now: float) -> Session:
        session = self._sessions.get(session_id)
        if session is not None and self._expires_at(session) <= now:
            self._expire(session)
            session = None
        if session is None:
            raise SessionNotFoundError("no such co-viewing session: it never existed or it has expired")
        return session

    def _touch(self, session_id: str) -> Session:
        now = self.clock()
        session = self._live(session_id, now)
        session.active_at = now
        self._sessions.move_to_end(session_id)
        return session

    def _expires_at(self, session: Session) -> float:
        return min(session.active_at + self.ttl_s, session.created_at + self.max_age_s)

    def _expire(self, session: Session) -> None:
        del self._sessions[session.session_id]
        if session.client is not None:
            self._per_client[session.client] -= 1
            if self._per_client[session.client] <= 0:
                del self._per_client[session.client]
        self._publish(session, sse_frame("expired", "{}"))
        self._publish(session, END)

    def _sweep(self, now: float) -> None:
        """Drop expired sessions: the least recently active first, then a full pass only when still full (a
        session can reach its maximum age while recently active)."""
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if self._expires_at(oldest) > now:
                break
            self._expire(oldest)
        if len(self._sessions) >= self.max_sessions:
            for session in [s for s in self._sessions.values() if self._expires_at(s) <= now]:
                self._expire(session)

    def _over_quota(self, client: str, max_per_client: int, now: float) -> bool:
        if self._per_client[client] < max_per_client:
            return False
        for session in [s for s in self._sessions.values() if s.client == client]:
            if self._expires_at(session) <= now:  # at its maximum age, but not yet swept (recently active)
                self._expire(session)
        return self._per_client[client] >= max_per_client

    def _evict_idle(self, now: float) -> bool:
        """Expire the least recently active session that never had a search and has been idle for
        `evict_idle_s`; False when there is none."""
        for session in self._sessions.values():  # least recently active first
            if now - session.active_at < self.evict_idle_s:
                return False  # and so are all the others
            if session.search_json is None:
                log.info("evicting an idle co-viewing session without a search: the store is full")
                self._expire(session)
                return True
        return False

    def _next_free_at(self) -> float:
        """When a full store next has room: a session expires, or one without a search may be evicted."""
        expiring = min(self._expires_at(s) for s in self._sessions.values())
        idle = [s.active_at + self.evict_idle_s for s in self._sessions.values() if s.search_json is None]
        return min([expiring, *idle])

    def _publish(self, session: Session, frame: str | None) -> None:
        for subscriber in list(session.subscribers):
            if not subscriber.offer(frame):
                session.subscribers.remove(subscriber)

    def _snapshot_json(self, session: Session) -> str:
        return session.snapshot_json(iso(self._expires_at(session)))

    # Helpers for frames(), on the event loop: each takes the lock only briefly.

    def _seconds_left(self, session: Session) -> float:
        with self._lock:
            return max(0.0, self._expires_at(session) - self.clock())

    def _expire_if_due(self, session: Session) -> bool:
        with self._lock:
            if self._sessions.get(session.session_id) is not session:
                return True  # already expired: its frames are queued
            if self._expires_at(session) > self.clock():
                return False
            self._expire(session)
            return True
