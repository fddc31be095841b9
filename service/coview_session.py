"""One co-viewing session's state and its open event streams (service/coview.py's SessionStore keeps them
and takes the lock around every use; service/coview_redis.py builds them from Redis to render a snapshot).
Entries are kept as the JSON text they are sent as: see coview.py."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass, field

from service.shopper_insight import insight_json

log = logging.getLogger(__name__)
MAX_MESSAGES = 100
MAX_ACTIVITY = 200
MAX_PUSHES = 50
MAX_PENDING_FRAMES = 256  # a stream this far behind is ended rather than buffered without bound
END = None  # in a stream's queue: end the stream
TIMEOUT = ""  # from Subscriber.next: nothing arrived in time


def sse_frame(event: str, data_json: str) -> str:
    """One server-sent event. JSON text never holds a raw newline, so `data` is one line."""
    return f"event: {event}\ndata: {data_json}\n\n"


def json_object(members: dict[str, str]) -> str:
    """A JSON object from JSON texts that are already serialized (its members' values)."""
    return "{" + ",".join(f"{json.dumps(name)}:{value}" for name, value in members.items()) + "}"


def json_text(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def photo_url(session_id: str, photo_version: int) -> str | None:
    """Where a session's search photo is shown (the version changes with each search); None before any."""
    if photo_version == 0:
        return None
    return f"/v1/sessions/{session_id}/photo?v={photo_version}"


def search_event_data(search_json: str, url: str | None) -> str:
    """The data of a `search` event: the search and its photo's address."""
    return json_object({"search": search_json, "photo_url": json_text(url)})


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
            frame = END
        if frame is END:
            self._ended = True
        self._frames.put_nowait(frame)

    async def next(self, timeout_s: float) -> str | None:
        """The next frame, None at the end, or TIMEOUT when nothing came within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._frames.get()
        except TimeoutError:
            return TIMEOUT


@dataclass(eq=False)
class Session:
    """What a session holds, its entries as their JSON texts (see the module's docstring)."""

    session_id: str
    created_at: float
    active_at: float
    client: str | None = None  # the address that created it: its quota
    search_json: str | None = None  # the last search's SearchResponse
    photo: bytes | None = None
    photo_version: int = 0
    selected: int | None = None
    messages: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_MESSAGES))  # MessageOut
    activity: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_ACTIVITY))  # ActivityOut
    pushed: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_PUSHES))  # PushOut
    subscribers: list[Subscriber] = field(default_factory=list)
    last_id: int = 0  # of messages and pushes
    shopper: str | None = None  # what the shopper page said of the shopper (shopper_insight.context_json)

    @property
    def photo_url(self) -> str | None:
        return photo_url(self.session_id, self.photo_version)

    def snapshot_json(self, expires_at: str) -> str:
        """SessionSnapshot as JSON, from the JSON texts the session holds (members in the model's order)."""
        members = {
            "session_id": json_text(self.session_id),
            "expires_at": json_text(expires_at),
            "search": self.search_json or "null",
            "photo_url": json_text(self.photo_url),
            "selected": json_text(self.selected),
            "messages": "[" + ",".join(self.messages) + "]",
            "activity": "[" + ",".join(self.activity) + "]",
            "pushed": "[" + ",".join(self.pushed) + "]",
            "insight": self.insight_json(),
        }
        return json_object(members)

    def insight_json(self) -> str:
        """The assistant's insight card (InsightOut) as JSON."""
        return insight_json(self.activity, self.shopper)
