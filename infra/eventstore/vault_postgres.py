"""The student key table on PostgreSQL (see vault.py); mixed into the PostgreSQL recorder."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from tutorledger.domain.privacy import KeyWrites, StudentKey
from tutorledger.infra.eventstore.vault import (
    LOOKUP_SECRET,
    activity_params,
    key_of,
    lookup,
    new_pepper,
)


def uuid_array(ids: Sequence[UUID]) -> str:
    """A uuid[] literal: one text parameter instead of a list dumped element by element."""
    return "{" + ",".join([u.hex for u in ids]) + "}"


def json_rows(rows: list[Any]) -> str:
    """Rows as one JSON text parameter (written in C, parsed by the server): one statement
    per batch, where `executemany` ran row by row and psycopg dumped value by value. Every
    batched PostgreSQL write of the ledger and the key table sends its rows this way."""
    return orjson.dumps(rows).decode()


def _secret(key: StudentKey) -> bytes:
    assert key.secret is not None, "a key is issued with its secret"
    return key.secret


NEVER = datetime.min.replace(tzinfo=UTC)  # no activity yet: before any other time


def vault_tables(schema: str) -> list[Composed]:
    s = Identifier(schema)
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {}.student_keys (token text PRIMARY KEY, "
            "district_id text NOT NULL, lookup bytea UNIQUE, secret bytea, "
            "issued_at timestamptz NOT NULL, last_activity timestamptz NOT NULL, "
            "erased_at timestamptz)"
        ).format(s),
        SQL(
            "CREATE INDEX IF NOT EXISTS student_keys_activity ON {}.student_keys "
            "(district_id, last_activity)"
        ).format(s),
        SQL(
            "CREATE TABLE IF NOT EXISTS {}.student_sessions (token text NOT NULL, "
            "originator_id uuid NOT NULL, PRIMARY KEY (token, originator_id))"
        ).format(s),
        SQL(
            "CREATE INDEX IF NOT EXISTS student_sessions_originator ON {}.student_sessions "
            "(originator_id)"
        ).format(s),
        SQL(
            "CREATE TABLE IF NOT EXISTS {}.privacy_secrets (name text PRIMARY KEY, "
            "value bytea NOT NULL)"
        ).format(s),
    ]


class PostgresVault:
    """Key-table reads and the writes that ride in the ledger's append transaction."""

    datastore: Any
    _pepper_value: bytes | None = None
    settle_seconds: float = 120.0  # how long a scrub waits for readers older than itself

    def _t(self, name: str) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(name))

    def _pepper(self, curs: Cursor[DictRow], create: bool) -> bytes | None:
        if self._pepper_value is None:
            curs.execute(
                SQL("SELECT value FROM {} WHERE name = %s").format(self._t("privacy_secrets")),
                (LOOKUP_SECRET,),
            )
            row = curs.fetchone()
            if row is None:
                if not create:
                    return None
                value = new_pepper()
                curs.execute(
                    SQL("INSERT INTO {} VALUES (%s, %s)").format(self._t("privacy_secrets")),
                    (LOOKUP_SECRET, value),
                )
                return value  # cached once committed: read again next time
            self._pepper_value = bytes(row["value"])
        return self._pepper_value

    def _write_keys(self, curs: Cursor[DictRow], writes: KeyWrites | None) -> None:
        if writes is None:
            return
        now = datetime.now(UTC)
        activity = dict(writes.activity)
        if writes.issued:
            pepper = self._pepper(curs, create=True)
            assert pepper is not None
            rows = [(k.token, k.district_id, lookup(pepper, k.district_id, sid).hex(),
                     _secret(k).hex(), (activity.pop(k.token, None) or NEVER).isoformat())
                    for k, sid in writes.issued]  # fmt: skip
            curs.execute(
                SQL(
                    "INSERT INTO {} SELECT r->>0, r->>1, decode(r->>2, 'hex'), "
                    "decode(r->>3, 'hex'), %s, (r->>4)::timestamptz, NULL "
                    "FROM json_array_elements(%s::json) r"
                ).format(self._t("student_keys")),
                (now, json_rows(rows)),
            )
        if writes.sessions:
            curs.execute(
                SQL(
                    "INSERT INTO {} SELECT r->>0, (r->>1)::uuid "
                    "FROM json_array_elements(%s::json) r ON CONFLICT DO NOTHING"
                ).format(self._t("student_sessions")),
                (json_rows([(token, str(key)) for token, key in writes.sessions]),),
            )
        if activity:  # only rows whose activity moves forward are written
            curs.execute(
                SQL(
                    "UPDATE {} k SET last_activity = v.at FROM (SELECT r->>0 AS token, "
                    "(r->>1)::timestamptz AS at FROM json_array_elements(%s::json) r) v "
                    "WHERE k.token = v.token AND k.last_activity < v.at"
                ).format(self._t("student_keys")),
                (json_rows([(token, at.isoformat()) for at, token in activity_params(activity)]),),
            )
        if writes.erased:
            curs.execute(
                SQL(
                    "UPDATE {} SET secret = NULL, lookup = NULL, erased_at = %s "
                    "WHERE token = ANY(%s)"
                ).format(self._t("student_keys")),
                (now, writes.erased),
            )

    def _read_keys(
        self,
        curs: Cursor[DictRow],
        originator_ids: Sequence[UUID],
        students: Sequence[tuple[str, str]],
    ) -> tuple[dict[str, StudentKey], dict[tuple[str, str], str]]:
        keys: dict[str, StudentKey] = {}
        if originator_ids:
            curs.execute(
                SQL(
                    "SELECT k.token, k.district_id, k.secret FROM {} s JOIN {} k "
                    "ON k.token = s.token WHERE s.originator_id = ANY(%s::uuid[])"
                ).format(self._t("student_sessions"), self._t("student_keys")),
                (uuid_array(originator_ids),),
            )
            keys.update((r["token"], key_of(_row(r))) for r in curs.fetchall())
        tokens: dict[tuple[str, str], str] = {}
        pepper = self._pepper(curs, create=False) if students else None
        if pepper is not None:
            by_lookup = {lookup(pepper, d, s): (d, s) for d, s in students}
            curs.execute(
                SQL(
                    "SELECT token, district_id, secret, lookup FROM {} WHERE lookup = ANY(%s)"
                ).format(self._t("student_keys")),
                (list(by_lookup),),
            )
            for r in curs.fetchall():
                keys[r["token"]] = key_of(_row(r))
                tokens[by_lookup[bytes(r["lookup"])]] = r["token"]
        return keys, tokens

    def student_keys(self, tokens: Sequence[str]) -> dict[str, StudentKey]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT token, district_id, secret FROM {} WHERE token = ANY(%s)").format(
                    self._t("student_keys")
                ),
                (list(tokens),),
            )
            return {r["token"]: key_of(_row(r)) for r in curs.fetchall()}

    def find_student(self, district_id: str, student_id: str) -> StudentKey | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            keys, tokens = self._read_keys(curs, [], [(district_id, student_id)])
        token = tokens.get((district_id, student_id))
        return keys[token] if token is not None else None

    def sessions_of(self, token: str) -> list[UUID]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT originator_id FROM {} WHERE token = %s").format(
                    self._t("student_sessions")
                ),
                (token,),
            )
            return [r["originator_id"] for r in curs.fetchall()]

    def idle_students(self, district_id: str, before: datetime) -> list[tuple[str, datetime]]:
        """Live students of the district whose last activity is before `before`."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT token, last_activity FROM {} WHERE district_id = %s AND "
                    "last_activity < %s AND secret IS NOT NULL ORDER BY last_activity, token"
                ).format(self._t("student_keys")),
                (district_id, before),
            )
            return [(r["token"], r["last_activity"]) for r in curs.fetchall()]

    def scrub(self) -> bool:
        """Rewrite the key table so no dead row version still holds a destroyed key (an UPDATE
        leaves the old version in the heap until vacuumed); the connection is in autocommit.

        VACUUM FULL copies the old versions a transaction or snapshot older than the erasure
        might still see (seen in tests: the key still in the rewritten file while another
        database's transaction ran), so it first waits, up to `settle_seconds`, for every
        one older than this call to end. Newer ones do not hold it back: a busy server
        settles as soon as its older readers finish. False: one outlived the wait (the
        rewrite runs anyway; the next scrub catches what it kept)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT pg_current_xact_id()::text AS mark")
            mark = str(curs.fetchone()["mark"])
            settled = _wait(curs, mark, time.monotonic() + self.settle_seconds)
            curs.execute(SQL("VACUUM FULL {}").format(self._t("student_keys")))
        return settled


# No transaction (any database) that began at or before `mark`, and no other session holding
# a snapshot taken while one did (its xmin at or before `mark`).
SETTLED_SQL = """
SELECT pg_snapshot_xmin(pg_current_snapshot()) > %(mark)s::xid8 AND NOT EXISTS (
    SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_xmin IS NOT NULL
        AND age(backend_xmin) >= age(%(mark)s::xid8::xid)
) AS settled
"""


def _wait(curs: Cursor[DictRow], mark: str, deadline: float) -> bool:
    while True:
        curs.execute(SETTLED_SQL, {"mark": mark})
        row = curs.fetchone()
        if row is not None and row["settled"]:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _row(r: Any) -> tuple[Any, Any, Any]:
    return (r["token"], r["district_id"], r["secret"])
