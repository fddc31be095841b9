"""Server-side style profiles (FASHION_PROFILES_ENABLED): the quiz's answers and what the shopper's clicks
taught, under an unguessable id, for `profile_id` on a search and the assistant's insight card.

A profile is one JSON document: {"answers": ProfileBody without `learn`, "learn": bool, "learned": {...},
"learned_price": float | null}. It expires `ttl_s` after it was last saved or used (a search or an event
with its id renews it); expired ones answer like ids that never existed and are deleted. DELETE ("forget
me") removes the document at once. Nothing else is kept: no item ids, no times but the expiry, no address.

ProfileStore holds the logic; SqliteProfiles (one machine) and service/profiles_redis.py's RedisProfiles
(every replica) keep the documents, each update atomic (a SQLite write transaction, a Redis WATCH).
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexer.metadata import ItemRecord
from models.attributes.taxonomy import Taxonomy
from search.profile import StyleProfile, learned_from, summary
from search.query import style_profile
from search.request_body import ProfileIn
from service.coview import iso
from service.errors import ProfileNotFoundError, ProfilesFullError
from service.profile_schemas import ProfileBody, ProfileCreated, ProfileOut

log = logging.getLogger(__name__)
Document = dict[str, Any]
Update = Callable[[Document], Document | None]  # the new document, or None to leave it unchanged


class ProfileStore:
    """The routes' view of the profiles; a subclass keeps the documents (`_put`, `_update`, `_delete`)."""

    def __init__(
        self,
        ttl_s: float,
        taxonomy: Taxonomy,
        clock: Callable[[], float] = time.time,
        max_profiles: int = 1_000_000,
    ) -> None:
        self.ttl_s = ttl_s
        self.taxonomy = taxonomy
        self.clock = clock
        self.max_profiles = max_profiles

    def create(self, body: ProfileBody) -> ProfileCreated:
        document = self._document(body, {}, None)
        profile_id = secrets.token_urlsafe(32)
        expires_at = self.clock() + self.ttl_s
        self._put(profile_id, document, expires_at)
        return ProfileCreated(profile_id=profile_id, expires_at=iso(expires_at))

    def get(self, profile_id: str) -> ProfileOut:
        document, expires_at = self._renewed(profile_id)
        return self._out(profile_id, document, expires_at)

    def replace(self, profile_id: str, body: ProfileBody) -> ProfileOut:
        """New answers; what was learned stays while `learn` stays on, and is forgotten when it is off."""

        def answer(document: Document) -> Document:
            learned = document["learned"] if body.learn else {}
            return self._document(body, learned, document["learned_price"] if body.learn else None)

        document, expires_at = self._changed(profile_id, answer)
        return self._out(profile_id, document, expires_at)

    def delete(self, profile_id: str) -> None:
        """Forget the profile now; ProfileNotFoundError when there is none."""
        if not self._delete(profile_id, self.clock()):
            raise not_found()

    def style_profile(self, profile_id: str) -> StyleProfile:
        """The ranking's profile of a stored id (renews it)."""
        document, _ = self._renewed(profile_id)
        return self._style(document)

    def summary(self, profile_id: str) -> str | None:
        """The profile in one line, or None when it is gone (expired or forgotten)."""
        try:
            return summary(self.style_profile(profile_id))
        except ProfileNotFoundError:
            return None

    def learn(self, profile_id: str, item: ItemRecord, event: str) -> bool:
        """Learn from the shopper's `event` on `item` when the profile opted in; whether it changed."""

        changed = False

        def learn(document: Document) -> Document | None:
            nonlocal changed
            if not document["learn"]:
                return None
            learned = learned_from(self._style(document), item, event)
            changed = (
                learned.learned != document["learned"] or learned.learned_price != document["learned_price"]
            )
            return {**document, "learned": dict(learned.learned), "learned_price": learned.learned_price}

        self._changed(profile_id, learn)
        return changed

    # What a backend provides.

    def _put(self, profile_id: str, document: Document, expires_at: float) -> None:
        """Keep a new document (expired ones swept first); ProfilesFullError at `max_profiles`."""
        raise NotImplementedError

    def _update(self, profile_id: str, now: float, update: Update) -> tuple[Document, float] | None:
        """Apply `update` atomically to a live document and renew it; None when there is none."""
        raise NotImplementedError

    def _delete(self, profile_id: str, now: float) -> bool:
        """Remove the document; whether it was live."""
        raise NotImplementedError

    # Shared helpers.

    def _renewed(self, profile_id: str) -> tuple[Document, float]:
        return self._changed(profile_id, lambda document: None)

    def _changed(self, profile_id: str, update: Update) -> tuple[Document, float]:
        found = self._update(profile_id, self.clock(), update)
        if found is None:
            raise not_found()
        return found

    def _document(self, body: ProfileBody, learned: dict[str, Any], learned_price: float | None) -> Document:
        answers = body.model_dump(exclude={"learn"})
        style_profile(ProfileIn(**answers), self.taxonomy)  # unknown values: InvalidRequestError (422)
        return {"answers": answers, "learn": body.learn, "learned": learned, "learned_price": learned_price}

    def _style(self, document: Document) -> StyleProfile:
        return style_profile(
            ProfileIn(**document["answers"]), self.taxonomy, document["learned"], document["learned_price"]
        )

    def _out(self, profile_id: str, document: Document, expires_at: float) -> ProfileOut:
        return ProfileOut(
            **document["answers"],
            learn=document["learn"],
            profile_id=profile_id,
            learned=document["learned"],
            learned_price=document["learned_price"],
            summary=summary(self._style(document)) or "",
            expires_at=iso(expires_at),
        )


def not_found() -> ProfileNotFoundError:
    return ProfileNotFoundError("no such style profile: it never existed, expired or was forgotten")


def full(max_profiles: int) -> ProfilesFullError:
    return ProfilesFullError(
        f"the service stores its limit of {max_profiles} style profiles; retry later", retry_after_s=60
    )


SCHEMA = "CREATE TABLE IF NOT EXISTS profiles (profile_id TEXT PRIMARY KEY, document TEXT NOT NULL, " \
    "expires_at REAL NOT NULL)"  # fmt: skip


class SqliteProfiles(ProfileStore):
    """Profiles in one SQLite file (WAL), for a single machine; expired rows are swept on each create."""

    def __init__(self, path: Path, *args: Any, **kwargs: Any) -> None:
        """ProfileStore's arguments after the file's path (created with its folder when missing)."""
        super().__init__(*args, **kwargs)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RuntimeError(
                f"the style profiles' file {path} is not a usable SQLite database: {exc}"
            ) from exc
        self._lock = threading.Lock()
        self.path = path

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _put(self, profile_id: str, document: Document, expires_at: float) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM profiles WHERE expires_at <= ?", (self.clock(),))
            (count,) = self._db.execute("SELECT COUNT(*) FROM profiles").fetchone()
            if count >= self.max_profiles:
                raise full(self.max_profiles)
            self._db.execute(
                "INSERT INTO profiles VALUES (?, ?, ?)", (profile_id, json.dumps(document), expires_at)
            )

    def _update(self, profile_id: str, now: float, update: Update) -> tuple[Document, float] | None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._live(profile_id, now)
                if found is not None:
                    document = update(found[0]) or found[0]
                    found = (document, now + self.ttl_s)
                    self._db.execute(
                        "UPDATE profiles SET document = ?, expires_at = ? WHERE profile_id = ?",
                        (json.dumps(document), found[1], profile_id),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return found

    def _delete(self, profile_id: str, now: float) -> bool:
        with self._lock, self._db:
            gone = self._db.execute(
                "DELETE FROM profiles WHERE profile_id = ? RETURNING expires_at", (profile_id,)
            ).fetchall()
            return any(expires_at > now for (expires_at,) in gone)

    def _live(self, profile_id: str, now: float) -> tuple[Document, float] | None:
        row = self._db.execute(
            "SELECT document, expires_at FROM profiles WHERE profile_id = ?", (profile_id,)
        ).fetchone()
        if row is None:
            return None
        if row[1] <= now:
            self._db.execute("DELETE FROM profiles WHERE profile_id = ?", (profile_id,))
            return None
        return json.loads(row[0]), float(row[1])
