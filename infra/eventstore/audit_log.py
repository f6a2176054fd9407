"""The audit log: checks an operator ran whose result is kept only as a digest.

`tutorledger reconcile-invoice` stores nothing of the invoice or of its report, only one
record here: when, which check, the district, and the digests of the source file and of
the report, so a report handed over later can be shown to be the one produced (recompute
its `report_sha256`, find it here). Records live in the event store's database (every
process and host sharing the store sees them) and are append-only: SQLite and PostgreSQL
both refuse UPDATE and DELETE on the table.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from tutorledger.infra.eventstore.postgres import SCHEMA_LOCK
from tutorledger.infra.eventstore.recorders import ledger_recorder, tuple_cursor
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder

_TABLE = (
    "CREATE TABLE IF NOT EXISTS audit_log (seq {serial} PRIMARY KEY, at TEXT NOT NULL, "
    "action TEXT NOT NULL, district_id TEXT NOT NULL, record TEXT NOT NULL)"
)
_SQLITE_GUARDS = [
    f"CREATE TRIGGER IF NOT EXISTS audit_log_append_only_{op} BEFORE {op} ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    for op in ("UPDATE", "DELETE")
]
_PG_GUARDS = [
    f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})",
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
    "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
]


class AuditLog:
    """Append to and read the audit log (SQLite or PostgreSQL)."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = ledger_recorder(recorder)
        self.sqlite = isinstance(self.recorder, SQLiteLedgerRecorder)
        self.mark = "?" if self.sqlite else "%s"
        with self._cursor(commit=True) as c:
            if self.sqlite:
                c.execute(_TABLE.format(serial="INTEGER"))
                for guard in _SQLITE_GUARDS:
                    c.execute(guard)
            else:
                c.execute(_PG_GUARDS[0])
                c.execute(_TABLE.format(serial="BIGSERIAL"))
                for guard in _PG_GUARDS[1:]:
                    c.execute(guard)

    def _cursor(self, commit: bool) -> AbstractContextManager[Any]:
        return tuple_cursor(self.recorder, commit)

    def append(self, action: str, district_id: str, record: dict[str, Any]) -> int:
        """Add one record; returns its sequence number."""
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        m = self.mark
        with self._cursor(commit=True) as c:
            c.execute(
                f"INSERT INTO audit_log (at, action, district_id, record) "
                f"VALUES ({m}, {m}, {m}, {m}) RETURNING seq",
                (at, action, district_id, json.dumps(record, sort_keys=True)),
            )
            return int(c.fetchone()[0])

    def records(self, district_id: str, action: str | None = None) -> list[dict[str, Any]]:
        """The district's records in order, each with `seq`, `at` and `action`."""
        m = self.mark
        sql = f"SELECT seq, at, action, record FROM audit_log WHERE district_id = {m}"
        params: list[Any] = [district_id]
        if action is not None:
            sql, params = sql + f" AND action = {m}", [*params, action]
        with self._cursor(commit=False) as c:
            c.execute(sql + " ORDER BY seq", params)
            rows = c.fetchall()
        return [{"seq": int(s), "at": at, "action": a, **json.loads(r)} for s, at, a, r in rows]
