"""Co-viewing sessions: a shopper's last search, messages, pushed products and activity, shared live with a
sales assistant over server-sent events.

Sessions live in memory only and are bounded everywhere: at most `max_sessions`, each keeping the most
recent MAX_MESSAGES / MAX_ACTIVITY / MAX_PUSHES entries, one downscaled search photo and MAX_STREAMS open
streams. A session expires after `ttl_s` without activity (writes renew it; reads do not) and `max_age_s`
after creation; expired sessions are swept lazily (when a session is created, and by their own streams) and
answer exactly like ids that never existed.

Routes run in the thread pool and streams on the event loop: every change happens under one lock, and its
event reaches each stream's queue through `loop.call_soon_threadsafe`, in the order of the changes. The
snapshot a stream starts with is taken under the same lock as its subscription, so no event is lost or
repeated between the two. A stream that falls MAX_PENDING_FRAMES behind is ended (the page reconnects).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from PIL import Image

from search.responses import SearchResponse
from service.errors import (
    PhotoNotFoundError,
    SessionNotFoundError,
    SessionsFullError,
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
    SessionSnapshot,
)

log = logging.getLogger(__name__)
MAX_MESSAGES = 100
MAX_ACTIVITY = 200
MAX_PUSHES = 50
MAX_STREAMS = 8  # per session
MAX_PENDING_FRAMES = 256  # a stream this far behind is ended rather than buffered without bound
PHOTO_MAX_SIDE = 640
PHOTO_QUALITY = 80
PING_FRAME = ": ping\n\n"
_END = None  # in a stream's queue: end the stream
_TIMEOUT = ""  # from Subscriber.next: nothing arrived in time


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sse_frame(event: str, data_json: str) -> str:
    """One server-sent event. JSON text never holds a raw newline, so `data` is one line."""
    return f"event: {event}\ndata: {data_json}\n\n"


def session_photo(picture: Image.Image) -> bytes:
    """The upright search photo as a JPEG no larger than PHOTO_MAX_SIDE on its longest side."""
    small = picture.copy()
    small.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
    out = io.BytesIO()
    small.convert("RGB").save(out, format="JPEG", quality=PHOTO_QUALITY)
    return out.getvalue()


class Subscriber:
    """One open stream: frames queued on its event loop, delivered from any thread."""

    def __init__(self, session: Session, loop: asyncio.AbstractEventLoop) -> None:
        self.session = session
        self._loop = loop
        self._frames: asyncio.Queue[str | None] = asyncio.Queue()  # bounded by _receive
        self._ended = False

    def offer(self, frame: str | None) -> bool:
        """Queue a frame (None: end the stream) from any thread; False when the stream's loop is gone."""
        try:
            self._loop.call_soon_threadsafe(self._receive, frame)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def _receive(self, frame: str | None) -> None:
        if self._ended:
            return
        if frame is not None and self._frames.qsize() >= MAX_PENDING_FRAMES:
            log.info("ending a session stream that fell %d events behind", MAX_PENDING_FRAMES)
            frame = _END
        if frame is _END:
            self._ended = True
        self._frames.put_nowait(frame)

    async def next(self, timeout_s: float) -> str | None:
        """The next frame, None at the end, or _TIMEOUT when nothing came within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._frames.get()
        except TimeoutError:
            return _TIMEOUT


@dataclass(eq=False)
class Session:
    session_id: str
    created_at: float
    active_at: float
    search: SearchResponse | None = None
    photo: bytes | None = None
    photo_version: int = 0
    selected: int | None = None
    messages: deque[MessageOut] = field(default_factory=lambda: deque(maxlen=MAX_MESSAGES))
    activity: deque[ActivityOut] = field(default_factory=lambda: deque(maxlen=MAX_ACTIVITY))
    pushed: deque[PushOut] = field(default_factory=lambda: deque(maxlen=MAX_PUSHES))
    subscribers: list[Subscriber] = field(default_factory=list)
    last_id: int = 0  # of messages and pushes

    @property
    def photo_url(self) -> str | None:
        if self.photo is None:
            return None
        return f"/v1/sessions/{self.session_id}/photo?v={self.photo_version}"


class SessionStore:
    def __init__(
        self,
        ttl_s: float,
        max_age_s: float,
        max_sessions: int,
        ping_s: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self.ping_s = ping_s
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently active first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def create(self) -> SessionCreated:
        with self._lock:
            now = self.clock()
            self._sweep(now)
            if len(self._sessions) >= self.max_sessions:
                soonest = min(self._expires_at(s) for s in self._sessions.values())
                raise SessionsFullError(
                    f"the service holds its limit of {self.max_sessions} co-viewing sessions; retry later",
                    retry_after_s=max(1, math.ceil(soonest - now)),
                )
            session = Session(secrets.token_urlsafe(32), created_at=now, active_at=now)
            self._sessions[session.session_id] = session
            expires_at = self._expires_at(session)
        return SessionCreated(
            session_id=session.session_id,
            assist_url=f"/assist/{session.session_id}",
            expires_at=iso(expires_at),
            ttl_s=int(self.ttl_s),
        )

    def require(self, session_id: str) -> None:
        """Raise SessionNotFoundError unless the session is live."""
        with self._lock:
            self._live(session_id, self.clock())

    def snapshot(self, session_id: str) -> SessionSnapshot:
        with self._lock:
            return self._snapshot(self._live(session_id, self.clock()))

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
            session.search, session.photo, session.selected = response, photo, None
            session.photo_version += 1
            data = f'{{"search":{search_json},"photo_url":{json.dumps(session.photo_url)}}}'
            self._publish(session, sse_frame("search", data))
        return True

    def add_message(self, session_id: str, sender: Sender, text: str) -> MessageOut:
        with self._lock:
            session = self._touch(session_id)
            session.last_id += 1
            message = MessageOut(id=session.last_id, sender=sender, text=text, at=iso(session.active_at))
            session.messages.append(message)
            self._publish(session, sse_frame("message", message.model_dump_json()))
        return message

    def add_push(self, session_id: str, item: PushedItem, garment: int | None, note: str | None) -> PushOut:
        with self._lock:
            session = self._touch(session_id)
            session.last_id += 1
            push = PushOut(
                id=session.last_id, item=item, garment=garment, note=note, at=iso(session.active_at)
            )
            session.pushed.append(push)
            self._publish(session, sse_frame("push", push.model_dump_json()))
        return push

    def add_activity(
        self,
        session_id: str,
        event_type: EventType,
        item_id: str | None,
        category: str | None,
        garment: int | None,
    ) -> ActivityOut:
        with self._lock:
            session = self._touch(session_id)
            activity = ActivityOut(
                type=event_type,
                item_id=item_id,
                category=category,
                garment=garment,
                at=iso(session.active_at),
            )
            session.activity.append(activity)
            if event_type == "select_garment":
                session.selected = garment
            self._publish(session, sse_frame("activity", activity.model_dump_json()))
        return activity

    def subscribe(self, session_id: str, loop: asyncio.AbstractEventLoop) -> tuple[Subscriber, str]:
        """A new stream of the session's events, and its first frame: the snapshot, taken at that moment."""
        with self._lock:
            session = self._live(session_id, self.clock())
            if len(session.subscribers) >= MAX_STREAMS:
                raise TooManyStreamsError(f"the session already has {MAX_STREAMS} open streams")
            subscriber = Subscriber(session, loop)
            session.subscribers.append(subscriber)
            snapshot = self._snapshot(session)
        return subscriber, sse_frame("snapshot", snapshot.model_dump_json())

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
                if frame is _END:
                    return
                if frame != _TIMEOUT:
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
            subscriber.offer(_END)

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
        self._publish(session, sse_frame("expired", "{}"))
        self._publish(session, _END)

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

    def _publish(self, session: Session, frame: str | None) -> None:
        for subscriber in list(session.subscribers):
            if not subscriber.offer(frame):
                session.subscribers.remove(subscriber)

    def _snapshot(self, session: Session) -> SessionSnapshot:
        return SessionSnapshot(
            session_id=session.session_id,
            expires_at=iso(self._expires_at(session)),
            search=session.search,
            photo_url=session.photo_url,
            selected=session.selected,
            messages=list(session.messages),
            activity=list(session.activity),
            pushed=list(session.pushed),
        )

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
