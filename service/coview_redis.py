"""Co-viewing sessions in the Redis every replica shares (FASHION_REDIS_URL): SessionStore's methods and
answers (service/coview.py), with the state in Redis and each event reaching the streams of every replica.

The keys and the scripts that change them: service/coview_redis_scripts.py. Each change is one Lua script,
which checks and takes the caps (sessions, per client, streams) and publishes the change's event.

Events go out on `<prefix>:session:<id>:events`. Each replica holds one pub/sub connection (SessionEvents),
subscribed to the sessions it has streams for, and fans each event out to them. A stream reads its snapshot
(and the seq of the session's last event) only once Redis confirmed its subscription, then skips the events
the snapshot holds: every event once, in order. When the connection fails the replica's streams end (the
pages reconnect) and the listener connects again by itself. Redis down: every session route answers 503
with Retry-After (SharedStateUnavailableError).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from search.responses import SearchResponse
from service.coview import PING_FRAME, SessionLimits, iso, session_created, sessions_full, too_many_sessions
from service.coview_redis_scripts import SessionScripts, SharedSubscriber, event_frame, ms, unavailable
from service.coview_session import END, TIMEOUT, Subscriber, json_text, sse_frame
from service.errors import PhotoNotFoundError, SharedStateUnavailableError
from service.shared_state import REDIS_ERRORS, RedisState
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
RECONNECT_S = 0.5  # between the listener's attempts to connect again
EXPIRED_FRAME = sse_frame("expired", "{}")


class SessionEvents:
    """This replica's pub/sub connection and the streams it feeds, all on one event loop (`start`'s)."""

    def __init__(self, state: RedisState, session_prefix: str) -> None:
        self._state = state
        self._prefix = session_prefix
        self._control = state.key("coview", "replica", secrets.token_hex(8))  # keeps the connection listening
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pubsub: PubSub | None = None  # while connected
        self._connected = asyncio.Event()
        self._lock = asyncio.Lock()  # orders SUBSCRIBE and UNSUBSCRIBE
        self._task: asyncio.Task[None] | None = None
        self._streams: dict[str, list[SharedSubscriber]] = {}  # by session id
        self._subscribed: dict[str, asyncio.Future[bool]] = {}  # session id: its SUBSCRIBE confirmed
        self._confirmations: dict[str, deque[asyncio.Future[bool]]] = {}  # in the order they were sent
        self._background: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._listen(), name="coview-events")
        with contextlib.suppress(TimeoutError):  # the first connection; while Redis is down it answers 503
            await asyncio.wait_for(self._connected.wait(), self._state.timeout_s + 1)

    async def aclose(self) -> None:
        """Stop listening, after the last releases (the streams were ended) had their moment."""
        if self._background:
            await asyncio.wait(self._background, timeout=self._state.timeout_s)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` on the loop in the background (kept referenced until it is done)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def open_streams(self) -> int:
        return sum(len(streams) for streams in list(self._streams.values()))

    def end_streams(self) -> None:
        for streams in list(self._streams.values()):
            for subscriber in list(streams):
                subscriber.offer(END)

    async def watch(self, subscriber: SharedSubscriber) -> None:
        """Feed `subscriber` its session's events, from when Redis confirms the subscription on."""
        if self._pubsub is None:
            raise unavailable()
        session_id = subscriber.session.session_id
        self._streams.setdefault(session_id, []).append(subscriber)
        try:
            confirmed = await self._subscribe(session_id)
            if confirmed is None or not await asyncio.wait_for(
                asyncio.shield(confirmed), self._state.timeout_s
            ):
                raise unavailable()
        except (*REDIS_ERRORS, TimeoutError) as exc:
            self.release(subscriber)
            raise unavailable() from exc
        except BaseException:
            self.release(subscriber)
            raise

    def release(self, subscriber: SharedSubscriber) -> None:
        session_id = subscriber.session.session_id
        streams = self._streams.get(session_id, [])
        if subscriber not in streams:
            return
        streams.remove(subscriber)
        if not streams:
            del self._streams[session_id]
            self.spawn(self._subscribe(session_id, quietly=True))

    async def _subscribe(self, session_id: str, quietly: bool = False) -> asyncio.Future[bool] | None:
        """(Un)subscribe as the session's streams here now want; its confirmation, when subscribed."""
        async with self._lock:
            pubsub = self._pubsub
            want, have = bool(self._streams.get(session_id)), session_id in self._subscribed
            try:
                if pubsub is not None and want and not have:
                    confirmed = asyncio.get_running_loop().create_future()
                    self._confirmations.setdefault(session_id, deque()).append(confirmed)
                    self._subscribed[session_id] = confirmed
                    await pubsub.subscribe(f"{self._prefix}{session_id}:events")
                elif pubsub is not None and have and not want:
                    del self._subscribed[session_id]
                    await pubsub.unsubscribe(f"{self._prefix}{session_id}:events")
            except REDIS_ERRORS:
                if not quietly:
                    raise
            return self._subscribed.get(session_id)

    async def _listen(self) -> None:
        """Connect, deliver, and on a failure end this replica's streams and connect again."""
        down = False
        while True:
            pubsub = self._state.aio.pubsub()
            try:
                await pubsub.subscribe(self._control)
                if pubsub.connection is not None:  # a silent reconnect could have lost events: fail instead
                    pubsub.connection.register_connect_callback(self._reconnected)
                self._pubsub = pubsub
                self._connected.set()
                if down:
                    log.warning("co-viewing events flow again: Redis answers")
                    down = False
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._deliver(message)
            except REDIS_ERRORS as exc:
                if not down:
                    log.warning("co-viewing streams end: Redis pub/sub failed (%s); reconnecting", exc)
                    down = True
            finally:
                await self._disconnect(pubsub)
            await asyncio.sleep(RECONNECT_S)

    def _reconnected(self, connection: AbstractConnection) -> None:
        raise RedisConnectionError("the pub/sub connection was lost: events may have been missed")

    def _deliver(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        session_id = channel[len(self._prefix) : -len(":events")]
        if message["type"] == "subscribe":
            pending = self._confirmations.get(session_id)
            if pending:
                confirmed = pending.popleft()
                if not confirmed.done():
                    confirmed.set_result(True)
                if not pending:
                    del self._confirmations[session_id]
        elif message["type"] == "message":
            event = message["data"].decode()
            for subscriber in self._streams.get(session_id, []):
                subscriber.offer(event)

    async def _disconnect(self, pubsub: PubSub) -> None:
        self._pubsub = None
        self._connected.clear()
        self.end_streams()
        self._streams.clear()
        for confirmed in self._subscribed.values():
            if not confirmed.done():
                confirmed.set_result(False)
        self._subscribed.clear()
        self._confirmations.clear()
        if pubsub.connection is not None:
            pubsub.connection.deregister_connect_callback(self._reconnected)
        await pubsub.aclose()


class RedisSessionStore(SessionLimits):
    """SessionStore's interface over Redis; `start` (awaited in the lifespan) starts the event listener."""

    def __init__(self, state: RedisState, *limits: Any, **options: Any) -> None:
        """`state`, then SessionLimits' arguments."""
        super().__init__(*limits, **options)
        self._state = state
        self._scripts = SessionScripts(state)
        self._events = SessionEvents(state, state.key("session", ""))
        self._leases = (f"{secrets.token_hex(8)}:{n}" for n in itertools.count())
        self._leases_lock = threading.Lock()

    def __len__(self) -> int:
        live = self._state.sync.zcount
        return int(self._state.call(live, self._scripts.keys[0], f"({ms(self.clock())}", "+inf"))

    async def start(self) -> None:
        await self._events.start()

    async def aclose(self) -> None:
        await self._events.aclose()

    def create(self, client: str | None = None, max_per_client: int | None = None) -> SessionCreated:
        now, session_id = self.clock(), secrets.token_urlsafe(32)
        caps = (client or "", self.max_sessions, max_per_client or 0, ms(self.evict_idle_s))
        reply = self._scripts.run("CREATE", session_id, now, self._limits, *caps)
        if reply[0] == b"quota":
            raise too_many_sessions(int(reply[1]), float(reply[2]) / 1000 - now)
        if reply[0] == b"full":
            raise sessions_full(self.max_sessions, float(reply[1]) / 1000 - now)
        if reply[2]:
            log.info("evicted an idle co-viewing session without a search: the sessions are at their limit")
        return session_created(session_id, int(reply[1]) / 1000, self.ttl_s)

    def require(self, session_id: str) -> None:
        self._scripts.live(session_id, self.clock())

    def snapshot(self, session_id: str) -> str:
        return self._scripts.read(session_id, self.clock(), self._limits).snapshot_json

    def photo(self, session_id: str) -> bytes:
        photo = self._scripts.live(session_id, self.clock(), "photo")
        if photo is None:
            raise PhotoNotFoundError("the session has no search photo yet")
        return bytes(photo)

    def attach_search(self, session_id: str, photo: bytes, response: SearchResponse) -> bool:
        """Keep the search (and its photo) as the session's last and tell the streams; False when the session
        expired while the search ran, or Redis did not answer (the search itself is still answered)."""
        search_json = response.model_dump_json()
        try:
            reply = self._scripts.run("SEARCH", session_id, self.clock(), self._limits, search_json, photo)
        except SharedStateUnavailableError:
            log.info("a search was not kept in its co-viewing session: Redis is unavailable")
            return False
        return bool(reply[0] == b"ok")

    def add_message(self, session_id: str, sender: Sender, text: str) -> MessageOut:
        now = self.clock()
        message = MessageOut(id=0, sender=sender, text=text, at=iso(now))
        number = self._scripts.add(session_id, now, self._limits, message)
        return message.model_copy(update={"id": number})

    def add_push(self, session_id: str, item: PushedItem, garment: int | None, note: str | None) -> PushOut:
        now = self.clock()
        push = PushOut(id=0, item=item, garment=garment, note=note, at=iso(now))
        number = self._scripts.add(session_id, now, self._limits, push)
        return push.model_copy(update={"id": number})

    def add_activity(
        self,
        session_id: str,
        event_type: EventType,
        item_id: str | None,
        category: str | None,
        garment: int | None,
        dwell_s: float | None = None,
    ) -> ActivityOut:
        now = self.clock()
        activity = ActivityOut(
            type=event_type, item_id=item_id, category=category, garment=garment, at=iso(now), dwell_s=dwell_s
        )
        selected = json_text(garment) if event_type == "select_garment" else ""
        self._scripts.add(session_id, now, self._limits, activity, selected)
        self._scripts.note(session_id, now, self._limits, "insight", self._scripts.insight_json(session_id))
        return activity

    def set_shopper(self, session_id: str, shopper_json: str) -> str:
        """As SessionStore.set_shopper; the insight is rendered from the activity read just before."""
        card = self._scripts.insight_json(session_id, shopper_json)
        self._scripts.note(session_id, self.clock(), self._limits, "insight", card, shopper_json)
        return card

    def subscribe(self, session_id: str, loop: asyncio.AbstractEventLoop) -> tuple[Subscriber, str]:
        """A new stream and its first frame, the snapshot; from a worker thread (it waits for the loop)."""
        if self._events.loop is None:
            raise RuntimeError("RedisSessionStore.start() was not awaited")
        with self._leases_lock:
            subscriber = SharedSubscriber(session_id, loop, next(self._leases))
        watching = asyncio.run_coroutine_threadsafe(self._events.watch(subscriber), self._events.loop)
        try:
            watching.result(self._state.timeout_s + 1)
        except concurrent.futures.TimeoutError:
            watching.cancel()
            raise unavailable() from None
        now = self.clock()
        try:
            read = self._scripts.read(session_id, now, self._limits, subscriber.lease, now + self._lease_s)
        except BaseException:
            self.unsubscribe(subscriber)
            raise
        subscriber.seen, subscriber.expires_at, subscriber.renewed_at = read.seq, read.expires_at, now
        return subscriber, sse_frame("snapshot", read.snapshot_json)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """End a stream's subscription and free its slot; from any thread."""
        assert isinstance(subscriber, SharedSubscriber)
        loop = self._events.loop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        try:
            loop.call_soon_threadsafe(self._events.release, subscriber)
        except RuntimeError:  # the loop is closed
            return
        if on_loop:
            self._events.spawn(self._scripts.forget(subscriber))
        else:
            self._scripts.forget_now(subscriber)

    async def frames(self, subscriber: Subscriber, first: str) -> AsyncIterator[str]:
        """`first`, then the session's events from every replica with a ping when idle, until the session
        expires (`expired`), the store closes its streams, Redis fails, or the client goes."""
        assert isinstance(subscriber, SharedSubscriber)
        try:
            yield first
            while True:
                left = subscriber.expires_at - self.clock()
                event = await subscriber.next(max(0.0, min(self.ping_s, left)))
                if event is END:
                    return
                if event != TIMEOUT:
                    seq, expires_at, frame = event_frame(subscriber.session.session_id, event)
                    if seq <= subscriber.seen:
                        continue  # the snapshot holds it
                    subscriber.seen, subscriber.expires_at = seq, expires_at
                    yield frame
                    if frame == EXPIRED_FRAME:
                        return
                if event == TIMEOUT or self.clock() - subscriber.renewed_at >= self.ping_s:
                    live = await self._renew(subscriber)
                    if live is None:
                        return  # Redis is down: the page reconnects
                    if not live:
                        yield EXPIRED_FRAME
                        return
                    if event == TIMEOUT:
                        yield PING_FRAME
        finally:
            self.unsubscribe(subscriber)

    def close_streams(self) -> None:
        """End this replica's open streams (it is stopping); the sessions stay."""
        self._events.end_streams()

    def open_streams(self) -> int:
        """On this replica."""
        return self._events.open_streams()

    @property
    def _limits(self) -> tuple[float, float]:
        return self.ttl_s, self.max_age_s

    @property
    def _lease_s(self) -> float:
        """How long a stream keeps its slot unless it renews it (it does with each ping)."""
        return 2 * self.ping_s + self._state.timeout_s + 5

    async def _renew(self, subscriber: SharedSubscriber) -> bool | None:
        """Whether the session is still live (the stream keeps its slot); None when Redis is down."""
        return await self._scripts.renew(subscriber, self.clock(), self._limits, self._lease_s)
