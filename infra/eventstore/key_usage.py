"""When each API key was last used, kept where `tutorledger keys list` can read it.

The keys file is the operator's, not the server's: writing it on a request would race the
`keys` commands and make every replica a writer. So use goes to a small table in the event
store's database (`api_key_usage`: key id → last use, epoch seconds), the one thing every
API process shares (as `signouts` explains), and the CLI reads it there, no restart needed.

It is kept cheap by throttling in each process: a key's use is written at most once per
`EVERY` seconds (so "last used" is exact to about a minute), as an upsert that only moves
the time forward, so workers writing at once never move it back. A write that fails (the
store is down) is logged by key id and dropped: authentication never waits on it twice.
Only the key id (a prefix of the key's SHA-256) is stored or logged, never the key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from tutorledger.infra.eventstore.postgres import SCHEMA_LOCK
from tutorledger.infra.eventstore.recorders import ledger_recorder, tuple_cursor
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder

log = logging.getLogger(__name__)
EVERY = 60.0  # seconds: a key's use is written at most this often per process
_TABLE = (
    "CREATE TABLE IF NOT EXISTS api_key_usage (key_id TEXT PRIMARY KEY, last_used BIGINT NOT NULL)"
)
_PG_LOCK = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"


class KeyUsage:
    """Read and write the last use of each key id (SQLite or PostgreSQL)."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = ledger_recorder(recorder)
        self.sqlite = isinstance(self.recorder, SQLiteLedgerRecorder)
        self.mark = "?" if self.sqlite else "%s"
        self._made = False

    def _cursor(self, commit: bool) -> AbstractContextManager[Any]:
        return tuple_cursor(self.recorder, commit)

    def _make(self) -> None:
        if self._made:
            return
        with self._cursor(commit=True) as c:
            if not self.sqlite:
                c.execute(_PG_LOCK)  # workers creating it at once take turns
            c.execute(_TABLE)
        self._made = True

    def record(self, key_id: str, at: datetime) -> None:
        """Note a use of `key_id` at `at`; an earlier time than the one stored is ignored."""
        self._make()
        m = self.mark
        with self._cursor(commit=True) as c:
            c.execute(
                f"INSERT INTO api_key_usage VALUES ({m}, {m}) ON CONFLICT (key_id) DO UPDATE "
                "SET last_used = excluded.last_used "
                "WHERE excluded.last_used > api_key_usage.last_used",
                (key_id, int(at.timestamp())),
            )

    def last_used(self) -> dict[str, datetime]:
        """Key id → when it was last used (keys never used are absent)."""
        self._make()
        with self._cursor(commit=False) as c:
            c.execute("SELECT key_id, last_used FROM api_key_usage")
            rows = c.fetchall()
        return {str(k): datetime.fromtimestamp(int(t), UTC) for k, t in rows}


class ThrottledUse:
    """The per-process throttle in front of `KeyUsage.record` (see the module docstring).

    `touch` is called on every authenticated request, so it costs a dict lookup unless a
    write is due; one request per key per `every` seconds pays for the write."""

    def __init__(
        self,
        record: Callable[[str, datetime], None],
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._record = record
        self._every = every
        self._clock = clock
        self._due: dict[str, float] = {}
        self._lock = threading.Lock()

    def touch(self, key_id: str) -> None:
        now = self._clock()
        with self._lock:
            if now < self._due.get(key_id, now):
                return
            self._due[key_id] = now + self._every  # set first: a failure is not retried at once
        try:
            self._record(key_id, datetime.now(UTC))
        except Exception as exc:  # never fail a request for a usage note
            log.warning(
                "key use not recorded", extra={"key_id": key_id, "error": type(exc).__name__}
            )
