"""Stores as `migrate-ledger` sees them: an old ledger opened read-only, a target's state.

The source is opened with table creation off (and, on SQLite, as a read-only URI), so the
old ledger's files are left exactly as they were. The few reads and writes the migration
needs beyond the ledger's own (per-district heads, the key table's size, the migration's
progress record in the target) are plain SQL on the recorder's connection, for both
backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse
from uuid import UUID

from eventsourcing.persistence import PersistenceError

from tutorledger.domain.errors import SourceEmpty, Unavailable
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.crypto import AesGcmCipher
from tutorledger.infra.eventstore.recorders import ledger_recorder, store_of
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder
from tutorledger.infra.eventstore.store import store_env

STATE_TABLE = "ledger_migration"


@dataclass(frozen=True)
class Head:
    """A district's chain as the index holds it: last position, its hash, event count."""

    position: int
    chain_hash: str
    events: int


def open_store(url: str, *, read_only: bool = False) -> Ledger:
    """A Ledger on `url`; read-only: no table is created and SQLite opens the file `ro`."""
    env = store_env(url)
    if read_only:
        env["CREATE_TABLE"] = "false"
        if "SQLITE_DBNAME" in env:
            path = Path(env["SQLITE_DBNAME"])
            if not path.is_file():
                raise SourceEmpty(f"no ledger file at {path}")
            env["SQLITE_DBNAME"] = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        return Ledger(env=env, cipher=AesGcmCipher(), index_of=ledger_recorder)
    except PersistenceError as exc:  # the URL names nothing usable: say so, not a traceback
        raise Unavailable(f"cannot open the store at {redacted(url)} (does it exist?)") from exc


def redacted(url: str) -> str:
    """The URL without its password, for output and logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl()


def sql_rows(
    ledger: Ledger, sql: str, params: tuple[Any, ...] = (), *, write: bool = False
) -> list[Any]:
    recorder = store_of(ledger)
    if isinstance(recorder, SQLiteLedgerRecorder):
        with recorder.datastore.transaction(commit=write) as c:
            c.execute(sql.replace("%s", "?"), params)
            return list(c.fetchall())
    from psycopg.rows import tuple_row

    with recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description is not None else []


def has_table(ledger: Ledger, name: str) -> bool:
    if isinstance(ledger.recorder, SQLiteLedgerRecorder):
        sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = %s"
        return bool(sql_rows(ledger, sql, (name,))[0][0])
    return sql_rows(ledger, "SELECT to_regclass(%s)", (name,))[0][0] is not None


def heads(ledger: Ledger) -> dict[str, Head]:
    """Every district's chain head and event count (empty when there is no index)."""
    if not has_table(ledger, "ledger_index"):
        return {}
    counts = sql_rows(
        ledger,
        "SELECT district_id, count(*), max(position) FROM ledger_index GROUP BY district_id",
    )
    found: dict[str, Head] = {}
    for district, events, last in counts:
        row = sql_rows(ledger, "SELECT chain_hash FROM ledger_index WHERE position = %s", (last,))
        found[str(district)] = Head(int(last), str(row[0][0]), int(events))
    return found


def key_rows(ledger: Ledger) -> int:
    """Students in the key table: 0 for a ledger that never sealed anything."""
    if not has_table(ledger, "student_keys"):
        return 0
    return int(sql_rows(ledger, "SELECT count(*) FROM student_keys")[0][0])


def last_event_id(ledger: Ledger) -> UUID | None:
    """The emitter's event id of the ledger's latest event (None when empty)."""
    rows = sql_rows(ledger, "SELECT event_id FROM ledger_index ORDER BY position DESC LIMIT 1")
    if not rows:
        return None
    value = rows[0][0]
    return value if isinstance(value, UUID) else UUID(bytes=bytes(value))


def stored_count(ledger: Ledger) -> int:
    """Stored events, indexed or not (an old ledger must have an index row for each)."""
    table = store_of(ledger).events_table_name
    return int(sql_rows(ledger, f"SELECT count(*) FROM {table}")[0][0])


def event_count(ledger: Ledger) -> int:
    if not has_table(ledger, "ledger_index"):
        return 0
    return int(sql_rows(ledger, "SELECT count(*) FROM ledger_index")[0][0])


def read_state(ledger: Ledger) -> dict[str, str]:
    """The migration's record in the target ('source': fingerprint, 'completed_at')."""
    if not has_table(ledger, STATE_TABLE):
        return {}
    return {str(k): str(v) for k, v in sql_rows(ledger, f"SELECT name, value FROM {STATE_TABLE}")}


def write_state(ledger: Ledger, name: str, value: str) -> None:
    sql_rows(
        ledger,
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        write=True,
    )
    sql_rows(ledger, f"DELETE FROM {STATE_TABLE} WHERE name = %s", (name,), write=True)
    sql_rows(ledger, f"INSERT INTO {STATE_TABLE} VALUES (%s, %s)", (name, value), write=True)
