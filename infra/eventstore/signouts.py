"""Dashboard sessions ended by sign-out, kept where every API process can see them.

A signed cookie stays valid by signature until it lapses (8 hours), so signing out has to be
remembered on the server: the session's random id, until the cookie would have lapsed
anyway. The table lives in the event store's database because that is the one thing every
API process shares — `serve --workers N` on one host, and replicas on several (PostgreSQL):
a sign-out recorded by one worker is seen by the next request on any other. A file beside
the keys file would serve one host only. Rows past their cookie's lapse are deleted at the
next sign-out, so the table holds at most the sign-outs of the last 8 hours.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from tutorledger.infra.eventstore.postgres import SCHEMA_LOCK, PostgresLedgerRecorder
from tutorledger.infra.eventstore.recorders import tuple_cursor
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder

_TABLE = (
    "CREATE TABLE IF NOT EXISTS dashboard_signouts (session_id TEXT PRIMARY KEY, "
    "lapses_at BIGINT NOT NULL)"
)
# Serve's workers may make the table at the same instant: take turns (released at commit).
_PG_LOCK = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class SignOuts:
    """Record and look up signed-out dashboard sessions (SQLite or PostgreSQL)."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        if not isinstance(recorder, SQLiteLedgerRecorder | PostgresLedgerRecorder):
            raise TypeError(f"no sign-out table for a {type(recorder).__name__}")
        self.recorder: SQLiteLedgerRecorder | PostgresLedgerRecorder = recorder
        self.sqlite = isinstance(recorder, SQLiteLedgerRecorder)
        self.mark = "?" if self.sqlite else "%s"
        with self._cursor(commit=True) as c:
            if not self.sqlite:
                c.execute(_PG_LOCK)
            c.execute(_TABLE)

    def _cursor(self, commit: bool) -> AbstractContextManager[Any]:
        return tuple_cursor(self.recorder, commit)

    def end(self, session_id: str, lapses_at: datetime) -> None:
        """Sign a session out until `lapses_at` (when its cookie lapses by itself)."""
        m = self.mark
        now = _epoch(datetime.now(UTC))
        with self._cursor(commit=True) as c:
            c.execute(f"DELETE FROM dashboard_signouts WHERE lapses_at < {m}", (now,))
            c.execute(
                f"INSERT INTO dashboard_signouts VALUES ({m}, {m}) "
                "ON CONFLICT (session_id) DO NOTHING",
                (session_id, _epoch(lapses_at)),
            )

    def ended(self, session_id: str) -> bool:
        """Whether the session was signed out."""
        with self._cursor(commit=False) as c:
            c.execute(
                f"SELECT 1 FROM dashboard_signouts WHERE session_id = {self.mark}", (session_id,)
            )
            return c.fetchone() is not None
