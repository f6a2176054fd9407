"""Writers' turns across processes, so a writer that lost a race cannot lose it again.

An append is judged against a snapshot read before the store's write lock is taken (SQLite's
single writer, PostgreSQL's table lock): reading and judging a batch under that lock would
stop every other process appending for as long as the Python work takes. So two processes
can judge at once, and the later commit fails on a unique key (the same session's next
version, the same new student's key) and is judged again. Under steady load with large
batches a loser's every new snapshot could be overtaken the same way (measured: one
1000-event batch lost ten times running with `serve --workers 2` on SQLite).

So every append holds a *shared* turn while it commits (many at once; the store serialises
them anyway), and a writer that has lost once takes the *exclusive* turn for its whole read,
judge and append: no other process can commit in between, and its next attempt stands. The
turn is a `flock` on a file beside a SQLite database, a PostgreSQL advisory lock on a server.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SUFFIX", "WRITERS_LOCK", "FileTurns", "PostgresTurns"]

# Any constant shared by every tutorledger process (another than the schema lock's).
WRITERS_LOCK = 0x74757477
SUFFIX = "-writers"  # the turn file beside a SQLite database: `<database>-writers`
SHARED_TURN_SQL = f"SELECT pg_advisory_xact_lock_shared({WRITERS_LOCK})"


class _Turns:
    """What both kinds share: this thread's own exclusive turn covers its commits too."""

    def __init__(self) -> None:
        self._local = threading.local()

    def holds_exclusive(self) -> bool:
        return bool(getattr(self._local, "exclusive", False))

    @contextmanager
    def _marked(self) -> Iterator[None]:
        self._local.exclusive = True
        try:
            yield
        finally:
            self._local.exclusive = False


class FileTurns(_Turns):
    """Turns as a `flock` on `<database>-writers` (None: an in-memory database, one process,
    whose writers the Ledger's own lock already serialises)."""

    def __init__(self, database: str | None) -> None:
        super().__init__()
        self.database = database
        self.path = None if database is None else database + SUFFIX

    @contextmanager
    def _locked(self, how: int) -> Iterator[None]:
        if self.path is None:
            yield
            return
        # A new open file each time: a flock belongs to the open file, so two threads
        # sharing one would share (and release) one lock. Read-only is enough to lock, and
        # the file is created readable by whoever may read the database (as SQLite creates
        # its -wal and -shm files), so an importer run as another user can take turns too.
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, self._mode())
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _mode(self) -> int:
        """The database file's read and write bits (0o644 before it exists)."""
        assert self.database is not None
        try:
            return os.stat(self.database).st_mode & 0o666
        except FileNotFoundError:
            return 0o644

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Around one append's commit (nothing, inside this thread's exclusive turn)."""
        if self.holds_exclusive():
            yield
            return
        with self._locked(fcntl.LOCK_SH):
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Around a whole read, judge and append: no other process commits meanwhile."""
        with self._locked(fcntl.LOCK_EX), self._marked():
            yield


class PostgresTurns(_Turns):
    """Turns as an advisory lock: appends take it shared inside their transaction
    (`shared_statement`), a loser takes it exclusively on a connection of its own."""

    def __init__(self, datastore: Any) -> None:
        super().__init__()
        self.datastore = datastore

    def shared_statement(self) -> str | None:
        """The statement an append's transaction runs first (None inside this thread's
        exclusive turn, whose lock would make it wait for itself)."""
        return None if self.holds_exclusive() else SHARED_TURN_SQL

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (WRITERS_LOCK,))
            try:
                with self._marked():
                    yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (WRITERS_LOCK,))
