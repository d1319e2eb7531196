"""Saved sessions: SQLAlchemy 2 models and the owner-scoped repository the app talks to.

A *session* is one ECG image (original + edited PNG) and the chat about it; each *turn* is one
question and its answer, committed the moment it is finished, so a crash or restart loses at most
the answer being generated; a session's *reading* (the digitiser's summary JSON and overlay
PNG, table ``readings``) is added once the image has been read. SQLite (``<data_dir>/pulse.db``,
WAL mode, foreign keys on) by default, for one app process; PostgreSQL
(``PULSE_DB_URL=postgresql://...``, driver psycopg 3, a connection pool per process) for several
replicas of the app on one database. Tables are made and upgraded by the migrations in
:mod:`pulse_app.migrations` when a Store opens.

What replicas share goes through here too: the lease of the answer being written for a
session (:meth:`Store.claim_answer`: one at a time across replicas), PDF reports waiting for
their owner's download (:meth:`Store.add_export`, :meth:`Store.take_export`), accounts signed
in through the login page (:meth:`Store.add_sign_in`), and values every replica agrees on
(:meth:`Store.app_value`).

Every method takes the ``owner`` first and filters on it: another owner's session id behaves
exactly like an id that does not exist (:class:`~pulse_app.errors.SessionNotFound`). Results are
plain dataclasses, detached from the database.

>>> store = Store("sqlite:///:memory:")
>>> s = store.create_session("user:ana", title="Chest pain, 54 y", model_id="tiny",
...                          model_revision=None, original_png=b"png", edited_png=b"png")
>>> _ = store.add_turn("user:ana", s.id, question="Rate?", answer="About 70 bpm.",
...                    model_id="tiny", model_label="tiny (untrained)", params={})
>>> [t.answer for t in store.get_session("user:ana", s.id).turns]
['About 70 bpm.']
>>> store.list_sessions("user:bob")
[]
"""

from __future__ import annotations

import os
import secrets
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    sessionmaker,
    undefer,
)
from sqlalchemy.pool import StaticPool

from pulse_app.errors import InvalidParameter, PulseError, SessionNotFound

#: Bump when the tables change, with a migration in pulse_app/migrations/versions.
SCHEMA_VERSION = 3
TITLE_MAX = 200
DEFAULT_TITLE = "Untitled ECG"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def new_session_id() -> str:
    """An unguessable session id: 144 random bits, URL-safe (24 characters)."""
    return secrets.token_urlsafe(18)


# -- tables ----------------------------------------------------------------------------------------

class Base(DeclarativeBase):
    pass


class SchemaInfo(Base):
    """One row: the schema version of this database (works on SQLite and PostgreSQL alike)."""

    __tablename__ = "schema_info"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class SessionRow(Base):
    __tablename__ = "sessions"
    # the session list's order, exactly (owner, then newest first, ties by id): read backwards
    __table_args__ = (Index("ix_sessions_owner_updated", "owner", "updated_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_session_id)
    owner: Mapped[str] = mapped_column(String(256), nullable=False)
    title: Mapped[str] = mapped_column(String(TITLE_MAX), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    model_id: Mapped[str | None] = mapped_column(String(512))
    model_revision: Mapped[str | None] = mapped_column(String(256))
    params: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    # deferred: the images load only where they are asked for (never for a turn's commit)
    original_png: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    edited_png: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    # the answer being written (Store.claim_answer): who writes it, until when at most
    answering_by: Mapped[str | None] = mapped_column(String(64))
    answering_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    turns: Mapped[list["TurnRow"]] = relationship(
        back_populates="session", order_by="TurnRow.index", cascade="all, delete-orphan",
        passive_deletes=True)


class ReadingRow(Base):
    """The digitiser's reading of a session's (edited) image: summary JSON (layout,
    calibration, per-lead status, measurements, evidence lines) and the overlay PNG. One per
    session, added after the session (a separate table: migration ``0003`` adds it to older
    databases, and sessions stay as they were)."""

    __tablename__ = "readings"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    summary: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    overlay_png: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)


class TurnRow(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("session_id", "index", name="uq_turns_session_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True)
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    question: Mapped[str] = mapped_column(Text, nullable=False)
    answer: Mapped[str] = mapped_column(Text, nullable=False)
    model_id: Mapped[str | None] = mapped_column(String(512))
    model_label: Mapped[str | None] = mapped_column(String(512))
    params: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    stopped: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    session: Mapped[SessionRow] = relationship(back_populates="turns")


class ExportRow(Base):
    """A file waiting for its owner's one download (any replica serves it): a session's PDF
    report, or bytes made from something else (``session_id`` then holds a key with a colon,
    e.g. ``deck:CODE``)."""

    __tablename__ = "exports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(256), nullable=False)
    session_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    filename: Mapped[str] = mapped_column(String(256), nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    media_type: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                 index=True)


class SignInRow(Base):
    """An account signed in through the login page: the SHA-256 of its cookie's token."""

    __tablename__ = "sign_ins"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class AppInfoRow(Base):
    """Values every replica on this database agrees on (made by the migrations)."""

    __tablename__ = "app_info"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), nullable=False)


# -- what callers get back -------------------------------------------------------------------------

@dataclass(frozen=True)
class TurnRecord:
    """One finished (or stopped) question and answer, and which model answered."""

    id: int
    session_id: str
    index: int                 # 0 = first question
    question: str
    answer: str
    model_id: str | None
    model_label: str | None
    params: dict
    stopped: bool              # True: the user pressed Stop, ``answer`` is partial
    created_at: datetime


@dataclass(frozen=True)
class ReadingRecord:
    """A session's stored reading: ``summary`` (``EcgReading.to_json()`` plus ``"lines"``, the
    evidence as text) and the overlay PNG (empty when not asked for)."""

    session_id: str
    created_at: datetime
    summary: dict
    overlay_png: bytes = b""

    @property
    def measurements(self) -> dict:
        return dict(self.summary.get("measurements") or {})

    @property
    def found_ecg(self) -> bool:
        return bool(self.summary.get("found_ecg"))


@dataclass(frozen=True)
class SessionRecord:
    """A whole session: both images (PNG bytes) and every turn, oldest first."""

    id: str
    owner: str
    title: str
    created_at: datetime
    updated_at: datetime
    model_id: str | None
    model_revision: str | None
    params: dict
    original_png: bytes
    edited_png: bytes
    turns: list[TurnRecord] = field(default_factory=list)


@dataclass(frozen=True)
class SessionSummary:
    """A row of the session list (no images)."""

    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    model_id: str | None
    turn_count: int


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ExportRecord:
    """A file taken for download (a session's PDF report unless ``media_type`` says else)."""

    id: str
    owner: str
    session_id: str
    filename: str
    data: bytes
    created_at: datetime
    media_type: str = "application/pdf"


def _end_lease(row: SessionRow, holder: str | None) -> None:
    if holder is not None and row.answering_by == holder:
        row.answering_by, row.answering_until = None, None


def _turn_record(row: TurnRow) -> TurnRecord:
    return TurnRecord(id=row.id, session_id=row.session_id, index=row.index,
                      question=row.question, answer=row.answer, model_id=row.model_id,
                      model_label=row.model_label, params=dict(row.params or {}),
                      stopped=bool(row.stopped), created_at=_aware(row.created_at))


def _text(text: str | None) -> str:
    """Text that every database can store: lone surrogates (broken Unicode) become "?"; a
    value that is not a string, or holds a NUL character (PostgreSQL refuses it), is refused.

    >>> _text("a\\x00b")
    Traceback (most recent call last):
    ...
    pulse_app.errors.InvalidParameter: the text contains a NUL character. send plain text
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InvalidParameter(f"the text must be a string (got {type(text).__name__})",
                               hint="send plain text")
    if "\x00" in text:
        raise InvalidParameter("the text contains a NUL character", hint="send plain text")
    return text.encode("utf-8", "replace").decode("utf-8")


def _clean_title(title: str | None) -> str:
    title = " ".join(_text(title).split())[:TITLE_MAX]
    return title or DEFAULT_TITLE


def _not_found() -> SessionNotFound:
    return SessionNotFound("this session does not exist (or was deleted)",
                           hint="pick one from your session list, or start a new one")


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner.strip() or "\x00" in owner:
        raise ValueError("every store call needs a non-empty owner")


# -- the repository --------------------------------------------------------------------------------

def database_url(url: str) -> str:
    """``url`` with its driver: ``postgresql://`` (and ``postgres://``) use psycopg 3.

    >>> database_url("postgres://pulse@db/pulse")
    'postgresql+psycopg://pulse@db/pulse'
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    """An engine for ``url``. SQLite gets its folder created, WAL mode and foreign keys on;
    other databases a pool of ``pool_size`` connections (+ ``max_overflow`` at busy moments)
    that tests each connection before use, so a dropped connection (server restart, a killed
    backend) is replaced instead of failing the next call."""
    url = database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=pool_size,
                             max_overflow=max_overflow, pool_timeout=30)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if not database or database == ":memory:":       # one shared connection for all threads
        engine = create_engine(url, connect_args={"check_same_thread": False},
                               poolclass=StaticPool)
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")       # a committed turn survives a crash
        cursor.execute("PRAGMA secure_delete=ON")       # deleted sessions are overwritten
        cursor.close()

    return engine


def _renew_after_fork(store: "Store") -> None:
    """In a forked child (e.g. a ZeroGPU worker) open new connections and a fresh lock: the
    parent's must not be shared across processes."""
    ref = weakref.ref(store)

    def renew() -> None:
        alive = ref()
        if alive is not None:
            alive.engine.dispose(close=False)
            if alive._write_lock is not None:
                alive._write_lock = threading.Lock()

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=renew)


class Store:
    """The sessions database: ``Store.from_settings(settings)`` or ``Store(url)``; its tables
    are made or upgraded on opening (:mod:`pulse_app.migrations`).

    Thread-safe: every call opens its own short database session.
    """

    def __init__(self, url: str, *, pool_size: int = 5, max_overflow: int = 5):
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time: writers of this process queue here instead of
        # failing with "database is locked"; other databases lock rows themselves.
        self._write_lock = (threading.Lock() if self.engine.dialect.name == "sqlite"
                            else None)
        _renew_after_fork(self)
        self.migrate()

    @classmethod
    def from_settings(cls, settings) -> "Store":
        """The store of ``settings.database_url``, pooled as the settings say."""
        return cls(settings.database_url, pool_size=settings.db_pool_size,
                   max_overflow=settings.db_pool_overflow)

    @property
    def shared(self) -> bool:
        """True on a database several processes may use at once (anything but SQLite)."""
        return self.engine.dialect.name != "sqlite"

    def migrate(self) -> str:
        """Make or upgrade the tables (:func:`pulse_app.migrations.upgrade`); refuse a database
        a newer version of the app wrote. Returns the migration revision."""
        from pulse_app import migrations

        newer = PulseError("the sessions database was written by a newer version of this app",
                           hint="upgrade the app, or point PULSE_DB_URL at another database")
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            revision = migrations.upgrade(self.engine)
        except Exception as error:
            if type(error).__name__ == "CommandError":      # alembic: unknown revision
                raise newer from error
            raise
        finally:
            if lock is not None:
                lock.release()
        if not self.shared:
            self._release_all_answers()
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise PulseError(f"{newer.message} (schema {version}, this app knows "
                             f"{SCHEMA_VERSION})", hint=newer.hint)
        return revision

    def schema_version(self) -> int:
        with self._session() as db:
            return int(db.scalar(select(func.max(SchemaInfo.version))))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Any]:
        """A database session in one transaction, committed when the block ends."""
        lock = self._write_lock if write else None
        if lock is not None:
            lock.acquire()
        try:
            with self._sessions() as db:
                with db.begin():
                    yield db
        finally:
            if lock is not None:
                lock.release()

    @staticmethod
    def _owned(db, owner: str, session_id: str, *, lock: bool = False,
               images: bool = False) -> SessionRow:
        _check_owner(owner)
        session_id = str(session_id)
        if "\x00" in session_id:                # no stored id has one (PostgreSQL refuses it)
            raise _not_found()
        query = select(SessionRow).where(SessionRow.id == session_id,
                                         SessionRow.owner == owner)
        if images:
            query = query.options(undefer(SessionRow.original_png),
                                  undefer(SessionRow.edited_png))
        if lock:
            query = query.with_for_update()
        row = db.scalar(query)
        if row is None:
            raise _not_found()
        return row

    # -- sessions --------------------------------------------------------------------------------

    def create_session(self, owner: str, *, title: str | None, model_id: str | None,
                       model_revision: str | None, original_png: bytes, edited_png: bytes,
                       params: dict | None = None) -> SessionRecord:
        """A new session holding the uploaded image (original and edited PNG bytes)."""
        _check_owner(owner)
        now = utc_now()
        row = SessionRow(id=new_session_id(), owner=owner, title=_clean_title(title),
                         created_at=now, updated_at=now, model_id=model_id,
                         model_revision=model_revision, params=dict(params or {}),
                         original_png=original_png, edited_png=edited_png)
        with self._session(write=True) as db:
            db.add(row)
        return self._record(row, [])

    def get_session(self, owner: str, session_id: str, *, turns: bool = True,
                    images: bool = True) -> SessionRecord:
        """The session with its images and turns (``images=False``: PNG fields empty,
        ``turns=False``: no turns), in one read; SessionNotFound if it is not ``owner``'s."""
        with self._session() as db:
            row = self._owned(db, owner, session_id, images=images)
            records = [_turn_record(t) for t in row.turns] if turns else []
            return self._record(row, records, images=images)

    def list_sessions(self, owner: str, *, search: str | None = None, limit: int = 50,
                      offset: int = 0) -> list[SessionSummary]:
        """``owner``'s sessions, most recently used first; ``search`` matches inside titles."""
        _check_owner(owner)
        turn_count = (select(func.count(TurnRow.id)).where(TurnRow.session_id == SessionRow.id)
                      .correlate(SessionRow).scalar_subquery())
        query = (select(SessionRow.id, SessionRow.title, SessionRow.created_at,
                        SessionRow.updated_at, SessionRow.model_id, turn_count)
                 .where(SessionRow.owner == owner)
                 .order_by(SessionRow.updated_at.desc(), SessionRow.id.desc())
                 .limit(max(0, int(limit))).offset(max(0, int(offset))))
        search = _text(search).strip()
        if search:
            query = query.where(SessionRow.title.icontains(search, autoescape=True))
        with self._session() as db:
            return [SessionSummary(id=r[0], title=r[1], created_at=_aware(r[2]),
                                   updated_at=_aware(r[3]), model_id=r[4], turn_count=int(r[5]))
                    for r in db.execute(query)]

    def count_sessions(self, owner: str, *, search: str | None = None) -> int:
        _check_owner(owner)
        query = select(func.count(SessionRow.id)).where(SessionRow.owner == owner)
        search = _text(search).strip()
        if search:
            query = query.where(SessionRow.title.icontains(search, autoescape=True))
        with self._session() as db:
            return int(db.scalar(query))

    def rename(self, owner: str, session_id: str, title: str) -> None:
        with self._session(write=True) as db:
            row = self._owned(db, owner, session_id)
            row.title = _clean_title(title)
            row.updated_at = utc_now()

    def delete_unchanged_since(self, cutoff: datetime) -> int:
        """Delete every owner's sessions last changed before ``cutoff`` (the retention
        setting); returns how many. SQLite then copies the write-ahead log into the file and
        empties it, so the deleted content (overwritten: ``secure_delete``) is gone from disk.
        On PostgreSQL one replica purges at a time (an advisory lock; the others skip and
        return 0), and the deleted rows' space is reclaimed by (auto)vacuum."""
        with self._session(write=True) as db:
            if not self._purge_lock(db):
                return 0
            old = select(SessionRow.id).where(SessionRow.updated_at < cutoff)
            db.execute(delete(ExportRow).where(ExportRow.session_id.in_(old)))
            db.execute(delete(TurnRow).where(TurnRow.session_id.in_(old)))
            db.execute(delete(ReadingRow).where(ReadingRow.session_id.in_(old)))
            count = db.execute(delete(SessionRow).where(SessionRow.updated_at < cutoff)).rowcount
        self.checkpoint()
        return int(count or 0)

    def delete_expired(self, *, exports_before: datetime, sign_ins_before: datetime
                       ) -> tuple[int, int]:
        """Delete exports made before ``exports_before`` and sign-ins made before
        ``sign_ins_before``; returns how many of each."""
        with self._session(write=True) as db:
            if not self._purge_lock(db):
                return 0, 0
            exports = db.execute(delete(ExportRow).where(ExportRow.created_at < exports_before))
            sign_ins = db.execute(delete(SignInRow)
                                  .where(SignInRow.created_at < sign_ins_before))
            return int(exports.rowcount or 0), int(sign_ins.rowcount or 0)

    def _purge_lock(self, db) -> bool:
        """PostgreSQL: this transaction holds the purge lock (False: another replica does)."""
        if not self.shared:
            return True
        from pulse_app.migrations import LOCK_KEY

        return bool(db.scalar(select(func.pg_try_advisory_xact_lock(LOCK_KEY + 1))))

    def checkpoint(self) -> None:
        """SQLite: move the write-ahead log into the database file and truncate it (best
        effort: readers in progress may keep a part of it until the next checkpoint)."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def delete(self, owner: str, session_id: str) -> None:
        """Delete the session and its turns (SessionNotFound if it is not ``owner``'s)."""
        with self._session(write=True) as db:
            self._owned(db, owner, session_id)
            db.execute(delete(ExportRow).where(ExportRow.session_id == session_id))
            db.execute(delete(TurnRow).where(TurnRow.session_id == session_id))
            db.execute(delete(ReadingRow).where(ReadingRow.session_id == session_id))
            db.execute(delete(SessionRow).where(SessionRow.id == session_id,
                                                SessionRow.owner == owner))
        self.checkpoint()                       # the overwritten pages replace the old ones

    # -- the digitiser's reading -------------------------------------------------------------------

    def save_reading(self, owner: str, session_id: str, *, summary: dict,
                     overlay_png: bytes) -> ReadingRecord:
        """Store (or replace) the reading of ``owner``'s session, in one commit."""
        with self._session(write=True) as db:
            self._owned(db, owner, session_id)
            row = db.get(ReadingRow, str(session_id))
            if row is None:
                row = ReadingRow(session_id=str(session_id))
                db.add(row)
            row.created_at, row.summary, row.overlay_png = utc_now(), dict(summary), overlay_png
            db.flush()
            return ReadingRecord(row.session_id, _aware(row.created_at), dict(row.summary),
                                 overlay_png)

    def set_turn_checks(self, owner: str, session_id: str, checks: dict[int, list]) -> None:
        """Store the consistency check of earlier turns (``{turn index: contradictions}``) in
        their params (``"consistency"``), in one commit: for answers written before the
        session's picture was read."""
        with self._session(write=True) as db:
            self._owned(db, owner, session_id)
            for turn in db.scalars(select(TurnRow).where(TurnRow.session_id == str(session_id),
                                                         TurnRow.index.in_(list(checks)))):
                turn.params = {**(turn.params or {}), "consistency": checks[turn.index]}

    def get_reading(self, owner: str, session_id: str, *, overlay: bool = True
                    ) -> ReadingRecord | None:
        """The stored reading of ``owner``'s session, or None when it was not read yet
        (SessionNotFound when the session is not ``owner``'s)."""
        with self._session() as db:
            self._owned(db, owner, session_id)
            query = select(ReadingRow).where(ReadingRow.session_id == str(session_id))
            if overlay:
                query = query.options(undefer(ReadingRow.overlay_png))
            row = db.scalar(query)
            if row is None:
                return None
            return ReadingRecord(row.session_id, _aware(row.created_at), dict(row.summary or {}),
                                 row.overlay_png if overlay else b"")

    # -- turns -----------------------------------------------------------------------------------

    def add_turn(self, owner: str, session_id: str, *, question: str, answer: str,
                 model_id: str | None, model_label: str | None, params: dict | None,
                 stopped: bool = False, model_revision: str | None = None,
                 holder: str | None = None) -> TurnRecord:
        """Append a finished turn and commit it at once.

        The session's model id + revision become those of this answer (its latest model);
        ``holder``'s answer lease (:meth:`claim_answer`) ends in the same commit.
        """
        with self._session(write=True) as db:
            row = self._owned(db, owner, session_id, lock=True)
            index = db.scalar(select(func.count(TurnRow.id))
                              .where(TurnRow.session_id == session_id))
            turn = TurnRow(session_id=session_id, index=int(index), question=_text(question),
                           answer=_text(answer), model_id=model_id, model_label=model_label,
                           params=dict(params or {}), stopped=bool(stopped),
                           created_at=utc_now())
            db.add(turn)
            row.updated_at = turn.created_at
            if model_id is not None:
                row.model_id, row.model_revision = model_id, model_revision
            _end_lease(row, holder)
            db.flush()
            return _turn_record(turn)

    def replace_last_turn(self, owner: str, session_id: str, *, answer: str,
                          model_id: str | None, model_label: str | None, params: dict | None,
                          stopped: bool = False, model_revision: str | None = None,
                          holder: str | None = None) -> TurnRecord:
        """Replace the last turn's answer (regenerate), in one commit; its question is kept."""
        with self._session(write=True) as db:
            row = self._owned(db, owner, session_id, lock=True)
            turn = db.scalar(select(TurnRow).where(TurnRow.session_id == session_id)
                             .order_by(TurnRow.index.desc()).limit(1))
            if turn is None:
                raise SessionNotFound("this session has no answer to regenerate yet",
                                      hint="ask a question first")
            now = utc_now()
            db.execute(update(TurnRow).where(TurnRow.id == turn.id).values(
                answer=_text(answer), model_id=model_id, model_label=model_label,
                params=dict(params or {}), stopped=bool(stopped), created_at=now))
            row.updated_at = now
            if model_id is not None:
                row.model_id, row.model_revision = model_id, model_revision
            _end_lease(row, holder)
            db.flush()
            db.refresh(turn)
            return _turn_record(turn)

    # -- the answer being written: one at a time per session, across replicas ----------------

    def claim_answer(self, owner: str, session_id: str, holder: str, lease_s: float, *,
                     renew: bool = False) -> bool:
        """Take (or extend) the session's answer lease for ``holder`` until ``lease_s`` from
        now; False when another holder's lease has not run out. With ``renew`` only a lease
        ``holder`` still has is extended (an answer whose turn was just stored, which ended its
        lease, never takes it back). SessionNotFound if the session is not ``owner``'s. A
        replica that dies mid-answer never releases: its lease lapses."""
        now = utc_now()
        free = (SessionRow.answering_by == holder if renew else
                or_(SessionRow.answering_by.is_(None), SessionRow.answering_by == holder,
                    SessionRow.answering_until < now))
        with self._session(write=True) as db:
            self._owned(db, owner, session_id)
            claimed = db.execute(
                update(SessionRow)
                .where(SessionRow.id == str(session_id), SessionRow.owner == owner, free)
                .values(answering_by=holder,
                        answering_until=now + timedelta(seconds=float(lease_s))))
            return claimed.rowcount == 1

    def _release_all_answers(self) -> None:
        """SQLite is one app process: a lease found when it opens is a dead process's."""
        with self._session(write=True) as db:
            db.execute(update(SessionRow).where(SessionRow.answering_by.is_not(None))
                       .values(answering_by=None, answering_until=None))

    def release_answer(self, owner: str, session_id: str, holder: str) -> None:
        """End ``holder``'s lease (when the answer ends without a stored turn)."""
        with self._session(write=True) as db:
            db.execute(update(SessionRow)
                       .where(SessionRow.id == str(session_id), SessionRow.owner == owner,
                              SessionRow.answering_by == holder)
                       .values(answering_by=None, answering_until=None))

    # -- exports: files waiting for their owner's download --------------------------------------

    def add_export(self, owner: str, session_id: str, filename: str, data: bytes,
                   media_type: str = "application/pdf") -> str:
        """Keep ``data`` for one download by ``owner``; returns its unguessable id.
        ``session_id`` is ``owner``'s session it was made from (SessionNotFound otherwise; it
        goes with the session), or a key with a colon for anything else (``deck:CODE``)."""
        _check_owner(owner)
        export_id, key = new_session_id(), _text(str(session_id))
        with self._session(write=True) as db:
            if ":" not in key:
                self._owned(db, owner, key)
            db.add(ExportRow(id=export_id, owner=owner, session_id=key, filename=_text(filename),
                             data=data, media_type=_text(media_type), created_at=utc_now()))
        return export_id

    def take_export(self, owner: str, export_id: str, *, not_before: datetime
                    ) -> ExportRecord | None:
        """The export, deleted in the same transaction (so only one request gets it, whichever
        replica serves it); None when it is not ``owner``'s, was taken, or was made before
        ``not_before``."""
        _check_owner(owner)
        if not isinstance(export_id, str) or "\x00" in export_id:
            return None
        with self._session(write=True) as db:
            row = db.scalar(select(ExportRow).where(ExportRow.id == export_id,
                                                    ExportRow.owner == owner))
            if row is None:
                return None
            taken = db.execute(delete(ExportRow).where(ExportRow.id == export_id,
                                                       ExportRow.owner == owner))
            if taken.rowcount != 1 or _aware(row.created_at) < not_before:
                return None
            return ExportRecord(id=row.id, owner=row.owner, session_id=row.session_id,
                                filename=row.filename, data=row.data,
                                created_at=_aware(row.created_at), media_type=row.media_type)

    # -- sign-ins through the login page (shared by every replica) -----------------------------

    def add_sign_in(self, digest: str, username: str) -> None:
        with self._session(write=True) as db:
            db.merge(SignInRow(digest=digest, username=_text(username), created_at=utc_now()))

    def signed_in_user(self, digest: str, *, not_before: datetime) -> str | None:
        with self._session() as db:
            row = db.get(SignInRow, digest)
            if row is None or _aware(row.created_at) < not_before:
                return None
            return row.username

    def sign_ins(self) -> dict[str, str]:
        """Every sign-in: digest -> user name (for signing a user out everywhere)."""
        with self._session() as db:
            return dict(db.execute(select(SignInRow.digest, SignInRow.username)).all())

    def delete_sign_in(self, digest: str) -> None:
        with self._session(write=True) as db:
            db.execute(delete(SignInRow).where(SignInRow.digest == digest))

    def app_value(self, key: str) -> str | None:
        """A value every replica on this database shares (e.g. ``cookie_id``)."""
        with self._session() as db:
            row = db.get(AppInfoRow, key)
            return row.value if row is not None else None

    @staticmethod
    def _record(row: SessionRow, turns: list[TurnRecord], *, images: bool = True
                ) -> SessionRecord:
        return SessionRecord(id=row.id, owner=row.owner, title=row.title,
                             created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),
                             model_id=row.model_id, model_revision=row.model_revision,
                             params=dict(row.params or {}),
                             original_png=row.original_png if images else b"",
                             edited_png=row.edited_png if images else b"", turns=turns)
