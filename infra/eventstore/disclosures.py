"""The disclosure log: who was given which students' personal data, when, and why.

Every response that carries a student's personal fields appends one record before it is
sent: when, the API key's id (a prefix of its SHA-256, never the key), its role, the
district, the students (tokens, never ids), the endpoint and the stated purpose. Records are
append-only (the database refuses UPDATE and DELETE) and chained per district with the
ledger's rule — h = sha256(prev ‖ "\\n" ‖ canonical(record with its sequence number)) — so a
removed or edited record shows. A UNIQUE (district, prev_hash) makes two writers that read
the same head collide instead of forking the chain; the loser retries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from tutorledger.domain.envelope import canonical_json
from tutorledger.domain.write_retry import retried
from tutorledger.infra.eventstore.ledger_index import GENESIS_HASH, chain_hash
from tutorledger.infra.eventstore.postgres import SCHEMA_LOCK
from tutorledger.infra.eventstore.recorders import ledger_recorder, tuple_cursor
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder

_TABLES = [
    "CREATE TABLE IF NOT EXISTS disclosures (seq {serial} PRIMARY KEY, district_id TEXT "
    "NOT NULL, record TEXT NOT NULL, prev_hash TEXT NOT NULL, chain_hash TEXT NOT NULL, "
    "UNIQUE (district_id, prev_hash))",
    "CREATE TABLE IF NOT EXISTS disclosure_students (token TEXT NOT NULL, seq BIGINT NOT NULL, "
    "PRIMARY KEY (token, seq))",
]
_SQLITE_GUARDS = [
    "CREATE TRIGGER IF NOT EXISTS disclosures_append_only_{op} BEFORE {op} ON disclosures "
    "BEGIN SELECT RAISE(ABORT, 'the disclosure log is append-only'); END"
]
# The DDL runs in one transaction; this lock makes processes doing it at once (serve's
# workers, on their first disclosure) take turns instead of failing on each other's
# half-made tables, function or trigger. Released at commit.
_PG_LOCK = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"
_PG_GUARDS = [
    "CREATE OR REPLACE FUNCTION disclosures_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the disclosure log is append-only'; END $$",
    "DROP TRIGGER IF EXISTS disclosures_append_only ON disclosures",
    "CREATE TRIGGER disclosures_append_only BEFORE UPDATE OR DELETE ON disclosures "
    "FOR EACH STATEMENT EXECUTE FUNCTION disclosures_append_only()",
]


@dataclass(frozen=True)
class Disclosure:
    """One access to students' personal data, as recorded."""

    key_id: str
    role: str
    district_id: str
    students: tuple[str, ...]  # tokens
    endpoint: str
    resource: str
    purpose: str

    def record(self, at: datetime) -> dict[str, Any]:
        return {
            "at": at.isoformat().replace("+00:00", "Z"),
            "key_id": self.key_id,
            "role": self.role,
            "district_id": self.district_id,
            "students": sorted(self.students),
            "endpoint": self.endpoint,
            "resource": self.resource,
            "purpose": self.purpose,
        }


class DisclosureLog:
    """Append and read the log in the event store's database (SQLite or PostgreSQL)."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = ledger_recorder(recorder)
        self.sqlite = isinstance(self.recorder, SQLiteLedgerRecorder)
        self.mark = "?" if self.sqlite else "%s"
        serial = "INTEGER" if self.sqlite else "BIGSERIAL"
        ddl = [t.format(serial=serial) for t in _TABLES]
        if self.sqlite:
            ddl += [g.format(op=op) for g in _SQLITE_GUARDS for op in ("UPDATE", "DELETE")]
        else:
            ddl = [_PG_LOCK, *ddl, *_PG_GUARDS]
        self._run(ddl, [])

    def _cursor(self, commit: bool) -> AbstractContextManager[Any]:
        return tuple_cursor(self.recorder, commit)

    def _run(self, statements: Sequence[str], params: Sequence[Any]) -> None:
        with self._cursor(commit=True) as c:
            for sql in statements:
                c.execute(sql, params)

    def append(self, disclosure: Disclosure) -> int:
        """Record one disclosure; returns its sequence number."""
        # A lost race: another writer extended this district's chain first.
        message = "could not record the disclosure; the data was not sent"
        return retried(lambda: self._append_once(disclosure), message)

    def _append_once(self, d: Disclosure) -> int:
        m = self.mark
        with self._cursor(commit=True) as c:
            c.execute(
                f"SELECT seq, chain_hash FROM disclosures WHERE district_id = {m} "
                "ORDER BY seq DESC LIMIT 1",
                (d.district_id,),
            )
            row = c.fetchone()
            prev = row[1] if row else GENESIS_HASH
            c.execute("SELECT coalesce(max(seq), 0) + 1 FROM disclosures")
            seq = int(c.fetchone()[0])
            record = d.record(datetime.now(UTC))
            digest = chain_hash(prev, seq, record)
            c.execute(
                f"INSERT INTO disclosures VALUES ({m}, {m}, {m}, {m}, {m})",
                (seq, d.district_id, canonical_json(record).decode(), prev, digest),
            )
            c.executemany(
                f"INSERT INTO disclosure_students VALUES ({m}, {m})",
                [(token, seq) for token in sorted(set(d.students))],
            )
        return seq

    def list(self, district_id: str, token: str | None = None) -> list[dict[str, Any]]:
        """The district's disclosures (of one student, given a token), oldest first."""
        m = self.mark
        if token is None:
            sql = f"SELECT seq, record, chain_hash FROM disclosures WHERE district_id = {m} "
            params: tuple[Any, ...] = (district_id,)
        else:
            sql = (
                "SELECT d.seq, d.record, d.chain_hash FROM disclosures d JOIN "
                f"disclosure_students s ON s.seq = d.seq WHERE d.district_id = {m} "
                f"AND s.token = {m} "
            )
            params = (district_id, token)
        with self._cursor(commit=False) as c:
            c.execute(sql + "ORDER BY 1", params)
            rows = c.fetchall()
        return [{"seq": int(r[0]), **json.loads(r[1]), "hash": r[2]} for r in rows]

    def verify(self, district_id: str) -> bool:
        """Recompute the district's chain from the records (trusting no stored hash)."""
        prev = GENESIS_HASH
        for item in self.list(district_id):
            record = {k: v for k, v in item.items() if k not in ("seq", "hash")}
            prev = chain_hash(prev, item["seq"], record)
            if prev != item["hash"]:
                return False
        return True
