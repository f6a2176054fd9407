"""The student key table on SQLite (see vault.py); mixed into the SQLite ledger recorder."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.sqlite import SQLiteCursor

from tutorledger.domain.privacy import KeyWrites, StudentKey
from tutorledger.infra.eventstore.vault import (
    LOOKUP_SECRET,
    activity_params,
    chunked,
    key_of,
    lookup,
    new_pepper,
    sqlite_time,
)

CHUNK = 500
VAULT_TABLES = [
    "CREATE TABLE IF NOT EXISTS student_keys (token TEXT PRIMARY KEY, district_id TEXT NOT NULL, "
    "lookup BLOB UNIQUE, secret BLOB, issued_at TEXT NOT NULL, last_activity TEXT NOT NULL, "
    "erased_at TEXT)",
    "CREATE INDEX IF NOT EXISTS student_keys_activity ON student_keys (district_id, last_activity)",
    "CREATE TABLE IF NOT EXISTS student_sessions (token TEXT NOT NULL, originator_id TEXT "
    "NOT NULL, PRIMARY KEY (token, originator_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS student_sessions_originator ON student_sessions (originator_id)",
    "CREATE TABLE IF NOT EXISTS privacy_secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
]


def _at(when: datetime | None) -> str:
    return "" if when is None else sqlite_time(when)


class SQLiteVault:
    """Key-table reads and the writes that ride in the ledger's append transaction."""

    datastore: Any
    _pepper_value: bytes | None = None

    def _pepper(self, c: SQLiteCursor) -> bytes:
        if self._pepper_value is None:
            c.execute("SELECT value FROM privacy_secrets WHERE name = ?", (LOOKUP_SECRET,))
            row = c.fetchone()
            if row is None:  # first use of this store: only ever written in a write transaction
                value = new_pepper()
                c.execute("INSERT INTO privacy_secrets VALUES (?, ?)", (LOOKUP_SECRET, value))
                return value  # cached only once committed: read again next time
            self._pepper_value = bytes(row[0])
        return self._pepper_value

    def _write_keys(self, c: SQLiteCursor, writes: KeyWrites | None) -> None:
        if writes is None:
            return
        now = sqlite_time(datetime.now(UTC))
        activity = dict(writes.activity)
        if writes.issued:
            pepper = self._pepper(c)
            c.executemany(
                "INSERT INTO student_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                [
                    (k.token, k.district_id, lookup(pepper, k.district_id, sid), k.secret, now,
                     _at(activity.pop(k.token, None)))
                    for k, sid in writes.issued
                ],
            )  # fmt: skip
        c.executemany(
            "INSERT OR IGNORE INTO student_sessions VALUES (?, ?)",
            [(token, key.hex) for token, key in writes.sessions],
        )
        # Only rows whose activity moves forward are written (and their index entry moved).
        c.executemany(
            "UPDATE student_keys SET last_activity = ?1 WHERE token = ?2 AND last_activity < ?1",
            [(sqlite_time(at), token) for at, token in activity_params(activity)],
        )
        if writes.erased:
            # secure_delete: the freed bytes of the old row are zeroed, not left in the file.
            c.execute("PRAGMA secure_delete = ON")
            c.executemany(
                "UPDATE student_keys SET secret = NULL, lookup = NULL, erased_at = ? "
                "WHERE token = ?",
                [(now, token) for token in writes.erased],
            )

    def _read_keys(
        self, c: SQLiteCursor, originator_ids: Sequence[UUID], students: Sequence[tuple[str, str]]
    ) -> tuple[dict[str, StudentKey], dict[tuple[str, str], str]]:
        sessions_sql = (
            "SELECT k.token, k.district_id, k.secret FROM student_sessions s JOIN "
            "student_keys k ON k.token = s.token WHERE s.originator_id IN ({marks})"
        )
        rows = rows_in_chunks(c, sessions_sql, [o.hex for o in originator_ids])
        keys = {r[0]: key_of(r) for r in rows}
        tokens: dict[tuple[str, str], str] = {}
        if students:
            pepper = self._stored_pepper(c)
            by_lookup = {lookup(pepper, d, s): (d, s) for d, s in students} if pepper else {}
            lookup_sql = (
                "SELECT token, district_id, secret, lookup FROM student_keys "
                "WHERE lookup IN ({marks})"
            )
            for r in rows_in_chunks(c, lookup_sql, list(by_lookup)):
                keys[r[0]] = key_of(r)
                tokens[by_lookup[bytes(r[3])]] = r[0]
        return keys, tokens

    def _stored_pepper(self, c: SQLiteCursor) -> bytes | None:
        if self._pepper_value is None:
            c.execute("SELECT value FROM privacy_secrets WHERE name = ?", (LOOKUP_SECRET,))
            row = c.fetchone()
            self._pepper_value = bytes(row[0]) if row else None
        return self._pepper_value

    def student_keys(self, tokens: Sequence[str]) -> dict[str, StudentKey]:
        sql = "SELECT token, district_id, secret FROM student_keys WHERE token IN ({marks})"
        with self.datastore.transaction(commit=False) as c:
            return {r[0]: key_of(r) for r in rows_in_chunks(c, sql, list(tokens))}

    def find_student(self, district_id: str, student_id: str) -> StudentKey | None:
        with self.datastore.transaction(commit=False) as c:
            keys, tokens = self._read_keys(c, [], [(district_id, student_id)])
        token = tokens.get((district_id, student_id))
        return keys[token] if token is not None else None

    def sessions_of(self, token: str) -> list[UUID]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT originator_id FROM student_sessions WHERE token = ?", (token,))
            return [UUID(r[0]) for r in c.fetchall()]

    def idle_students(self, district_id: str, before: datetime) -> list[tuple[str, datetime]]:
        """Live students of the district whose last activity is before `before`."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT token, last_activity FROM student_keys WHERE district_id = ? AND "
                "last_activity < ? AND secret IS NOT NULL ORDER BY last_activity, token",
                (district_id, sqlite_time(before)),
            )
            return [(r[0], datetime.fromisoformat(r[1]).replace(tzinfo=UTC)) for r in c.fetchall()]

    def scrub(self) -> bool:
        """Copy the WAL into the database file and truncate it: the zeroed pages replace the
        ones that held the destroyed keys, and no old page image stays in the WAL."""
        with self.datastore.get_connection(commit=True) as conn:
            conn.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # outside a transaction
        return True


def rows_in_chunks(c: SQLiteCursor, sql: str, values: list[Any]) -> Iterator[Any]:
    """The rows of `sql` (whose `{marks}` is an IN list) over `values`, CHUNK at a time:
    a batch's ids in one statement would pass SQLite's limit on bound parameters."""
    for chunk in chunked(values, CHUNK):
        c.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)
        yield from c.fetchall()
