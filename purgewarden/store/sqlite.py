"""The embedded store: one SQLite file in WAL mode, shared by every purgewarden process on the machine.

A SIGKILLed process loses nothing it was told is stored: WAL with `synchronous=NORMAL` survives a
process crash (only a power loss may take the last transactions). Calls run on one worker thread, so
a write waiting on another process's lock never blocks the event loop. Journal appends, the one write a
run makes per request, are tried first on the event loop's own thread with a connection that never
waits (no busy timeout, no checkpoint of its own): when the write lock is free the insert costs less than
the hop to the worker thread; when anyone holds it, the append goes to the worker thread, which waits.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from purgewarden.store import EMPTY_IDS, PlanSlot, Store, StoredRun, StoreError

T = TypeVar("T")
WAL_CHECKPOINT_PAGES = 16_384
"""64 MB of 4 KB pages before the WAL is copied back into the database."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS plans (
    key TEXT PRIMARY KEY, body TEXT NOT NULL, keep_until REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0, asking_until REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS plans_keep_until ON plans (keep_until);
CREATE TABLE IF NOT EXISTS plan_ids (key TEXT PRIMARY KEY, keep_until REAL NOT NULL, ids BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS plan_ids_keep_until ON plan_ids (keep_until);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, started REAL NOT NULL, state TEXT NOT NULL, owner TEXT NOT NULL,
    body TEXT NOT NULL, cancel INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS journal_run ON journal (run_id, seq);
CREATE TABLE IF NOT EXISTS owners (owner TEXT PRIMARY KEY, alive_until REAL NOT NULL);
"""


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._db: sqlite3.Connection | None = None
        self._appender: sqlite3.Connection | None = None
        """For journal appends on the event loop's thread; opened by the worker thread with `_db`."""
        self._lock = threading.Lock()
        self._thread = anyio.CapacityLimiter(1)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # A run's journal (4 MB for 100,000 ids) would cross the default 4 MB checkpoint mid-run, and
            # copying the WAL back (with an fsync) in the middle of a run costs as much as writing it.
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            db.executescript(SCHEMA)
            # Set up waiting like `db` (its first statement reads the schema, which another process may be
            # writing), then made never to wait.
            appender = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            try:
                appender.execute("PRAGMA synchronous=NORMAL")
                appender.execute("PRAGMA wal_autocheckpoint=0")  # `db` checkpoints, on the worker thread
                appender.execute("PRAGMA busy_timeout=0")
            except sqlite3.Error:
                appender.close()
                db.close()
                raise
            self._db, self._appender = db, appender
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._connect())

        try:
            return await anyio.to_thread.run_sync(locked, limiter=self._thread)
        except (sqlite3.Error, OSError) as error:
            raise self._failed(error) from error

    def _failed(self, error: sqlite3.Error | OSError) -> StoreError:
        return StoreError(f"the store at {self.path} failed: {error}")

    # --- plans -------------------------------------------------------------------------------------

    async def put_plan(
        self, key: str, body: str, keep_until: float, now: float, *, ids: bytes = EMPTY_IDS
    ) -> None:
        def put(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute("DELETE FROM plans WHERE keep_until < ?", (now,))
                db.execute("DELETE FROM plan_ids WHERE keep_until < ?", (now,))
                db.execute(
                    "INSERT INTO plans (key, body, keep_until) VALUES (?, ?, ?)", (key, body, keep_until)
                )
                # Written into the row's pages in place: bound as a parameter, 4 MB of ids would be copied
                # twice more by SQLite (the bound value, then the record).
                ((row,),) = db.execute(
                    "INSERT INTO plan_ids (key, keep_until, ids) VALUES (?, ?, zeroblob(?)) RETURNING rowid",
                    (key, keep_until, len(ids)),
                ).fetchall()
                with db.blobopen("plan_ids", "ids", row) as blob:
                    blob.write(ids)

        await self._run(put)

    async def get_plan(self, key: str) -> PlanSlot | None:
        def get(db: sqlite3.Connection) -> PlanSlot | None:
            row = db.execute("SELECT body, used, asking_until FROM plans WHERE key = ?", (key,)).fetchone()
            return PlanSlot(row[0], bool(row[1]), float(row[2])) if row else None

        return await self._run(get)

    async def reserve(self, key: str, until: float, now: float) -> bool:
        sql = "UPDATE plans SET asking_until = ? WHERE key = ? AND used = 0 AND asking_until <= ?"
        return await self._run(lambda db: db.execute(sql, (until, key, now)).rowcount == 1)

    async def release(self, key: str) -> None:
        await self._run(lambda db: db.execute("UPDATE plans SET asking_until = 0 WHERE key = ?", (key,)))

    async def consume(self, key: str) -> bytes | None:
        def consume(db: sqlite3.Connection) -> bytes | None:
            with _transaction(db):
                sql = "UPDATE plans SET used = 1, asking_until = 0 WHERE key = ? AND used = 0"
                if db.execute(sql, (key,)).rowcount != 1:
                    return None
                row = db.execute("SELECT rowid FROM plan_ids WHERE key = ?", (key,)).fetchone()
                if row is None:  # put by an earlier version, ids in its body: a re-check then lists again
                    return EMPTY_IDS
                with db.blobopen("plan_ids", "ids", row[0], readonly=True) as blob:
                    return blob.read()  # straight into one bytes object, not through a copy of SQLite's

        return await self._run(consume)

    # --- runs --------------------------------------------------------------------------------------

    async def create_run(self, run_id: str, owner: str, started: float, body: str) -> None:
        sql = "INSERT INTO runs (id, started, state, owner, body) VALUES (?, ?, 'running', ?, ?)"
        await self._run(lambda db: db.execute(sql, (run_id, started, owner, body)))

    async def append_entries(self, entries: list[tuple[str, str]]) -> None:
        """On the event loop's thread when the write lock is free at once (a bulk delete appends twice per
        batch, and the hop to the worker thread and back costs more than the insert); else on the worker
        thread."""
        if self._appender is not None:
            try:
                _insert_entries(self._appender, entries)
                return
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # any extended BUSY code too
                    raise self._failed(error) from error
            except (sqlite3.Error, OSError) as error:
                raise self._failed(error) from error
        await self._run(lambda db: _insert_entries(db, entries))

    async def save_run(self, run_id: str, state: str, body: str) -> None:
        sql = "UPDATE runs SET state = ?, body = ? WHERE id = ?"
        await self._run(lambda db: db.execute(sql, (state, body, run_id)))

    async def get_run(self, run_id: str, *, entries: bool = True) -> StoredRun | None:
        def get(db: sqlite3.Connection) -> StoredRun | None:
            row = db.execute("SELECT id, state, owner, body FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            journal = (
                [
                    e
                    for (e,) in db.execute(
                        "SELECT entry FROM journal WHERE run_id = ? ORDER BY seq", (run_id,)
                    )
                ]
                if entries
                else []
            )
            return StoredRun(row[0], row[1], row[2], row[3], entries=journal)

        return await self._run(get)

    async def recent_runs(self, limit: int) -> list[StoredRun]:
        sql = "SELECT id, state, owner, body FROM runs ORDER BY started DESC LIMIT ?"
        return await self._run(lambda db: [StoredRun(*row) for row in db.execute(sql, (limit,))])

    async def running_runs(self) -> list[StoredRun]:
        sql = "SELECT id, state, owner, body FROM runs WHERE state = 'running'"
        return await self._run(lambda db: [StoredRun(*row) for row in db.execute(sql)])

    async def claim(self, run_id: str, owner: str, expected_owner: str) -> bool:
        sql = "UPDATE runs SET owner = ? WHERE id = ? AND owner = ? AND state = 'running'"
        return await self._run(lambda db: db.execute(sql, (owner, run_id, expected_owner)).rowcount == 1)

    async def request_cancel(self, run_id: str) -> None:
        await self._run(lambda db: db.execute("UPDATE runs SET cancel = 1 WHERE id = ?", (run_id,)))

    async def cancel_requested(self, run_id: str) -> bool:
        sql = "SELECT cancel FROM runs WHERE id = ?"
        return await self._run(lambda db: bool((db.execute(sql, (run_id,)).fetchone() or (0,))[0]))

    # --- owners ------------------------------------------------------------------------------------

    async def beat(self, owner: str, alive_until: float, now: float) -> None:
        def beat(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute("DELETE FROM owners WHERE alive_until < ?", (now - 3600,))
                db.execute(
                    "INSERT INTO owners (owner, alive_until) VALUES (?, ?) "
                    "ON CONFLICT (owner) DO UPDATE SET alive_until = excluded.alive_until",
                    (owner, alive_until),
                )

        await self._run(beat)

    async def alive_until(self, owner: str) -> float:
        sql = "SELECT alive_until FROM owners WHERE owner = ?"
        return await self._run(lambda db: float((db.execute(sql, (owner,)).fetchone() or (0.0,))[0]))

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        def close(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._appender is not None:
            self._appender.close()
            self._appender = None

        if self._db is not None:
            await self._run(close)


def _insert_entries(db: sqlite3.Connection, entries: list[tuple[str, str]]) -> None:
    with _transaction(db):  # all of them or none
        db.executemany("INSERT INTO journal (run_id, entry) VALUES (?, ?)", entries)


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One transaction, holding the write lock from its start. (`with db:` begins none on a connection
    in autocommit mode, as this one is: each statement would commit on its own.)"""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # some failures end the transaction themselves
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
