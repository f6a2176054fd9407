"""Event store wiring: eventsourcing recorders extended with the ledger index.

The index sits beside the stored events and is written in the same transaction:
one row per stored event with its global position, the emitter's `event_id`
(unique: the idempotency key), the district, the body digest and the district's
hash-chain value. Appends are serialised by the store (SQLite's single writer,
PostgreSQL's table lock), so each district's chain is extended in commit order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from uuid import UUID

from eventsourcing.persistence import ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from tutorledger.domain.envelope import canonical_json
from tutorledger.domain.ledger import Ledger, LedgerEntry
from tutorledger.infra.settings import Settings

GENESIS_HASH = "0" * 64
_CHUNK = 500


def chain_hash(prev_hash: str, position: int, canonical: dict[str, Any]) -> str:
    """hash = sha256(prev_hash_hex ‖ "\\n" ‖ canonical JSON of the event with its position)."""
    record = {**canonical, "position": position}
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(record)).hexdigest()


def _index_rows(
    stored_events: Sequence[StoredEvent],
    positions: Sequence[int],
    entries: Iterable[LedgerEntry],
    heads: dict[str, str],
) -> list[tuple[int, bytes, str, bytes, str]]:
    """Pair stored events with their ledger entries and extend each district's chain."""
    by_key = {(e.originator_id, e.originator_version): e for e in entries}
    rows = []
    for stored, position in zip(stored_events, positions, strict=True):
        entry = by_key.get((UUID(str(stored.originator_id)), stored.originator_version))
        if entry is None:
            raise ProgrammingError("every stored event needs a ledger entry (event_id, chain)")
        digest = chain_hash(heads[entry.district_id], position, entry.canonical)
        heads[entry.district_id] = digest
        rows.append((position, entry.event_id.bytes, entry.district_id, entry.digest, digest))
    return rows


class SQLiteLedgerRecorder(SQLiteApplicationRecorder):
    """SQLite recorder that also maintains the ledger index in the append transaction."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS ledger_index ("
            "position INTEGER PRIMARY KEY, event_id BLOB NOT NULL, district_id TEXT NOT NULL, "
            "digest BLOB NOT NULL, chain_hash TEXT NOT NULL)",
            "CREATE UNIQUE INDEX IF NOT EXISTS ledger_index_event_id ON ledger_index (event_id)",
            "CREATE INDEX IF NOT EXISTS ledger_index_district ON ledger_index "
            "(district_id, position)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        assert positions is not None
        entries: list[LedgerEntry] = kwargs.get("ledger_entries") or []
        heads: dict[str, str] = {}
        for district in {e.district_id for e in entries}:
            c.execute(
                "SELECT chain_hash FROM ledger_index WHERE district_id=? "
                "ORDER BY position DESC LIMIT 1",
                (district,),
            )
            row = c.fetchone()
            heads[district] = row[0] if row else GENESIS_HASH
        c.executemany(
            "INSERT INTO ledger_index VALUES (?,?,?,?,?)",
            _index_rows(stored_events, positions, entries, heads),
        )
        return positions

    def read_batch(
        self, originator_ids: Sequence[UUID], event_ids: Sequence[UUID]
    ) -> tuple[list[StoredEvent], dict[UUID, tuple[int, bytes]]]:
        """Sessions and already-stored event ids from one snapshot (one read transaction)."""
        with self.datastore.transaction(commit=False) as c:
            return self._select_events_of(c, originator_ids), self._lookup(c, event_ids)

    def lookup_event_ids(self, event_ids: Sequence[UUID]) -> dict[UUID, tuple[int, bytes]]:
        with self.datastore.transaction(commit=False) as c:
            return self._lookup(c, event_ids)

    @staticmethod
    def _lookup(c: SQLiteCursor, event_ids: Sequence[UUID]) -> dict[UUID, tuple[int, bytes]]:
        found: dict[UUID, tuple[int, bytes]] = {}
        for i in range(0, len(event_ids), _CHUNK):
            chunk = [e.bytes for e in event_ids[i : i + _CHUNK]]
            c.execute(
                "SELECT event_id, position, digest FROM ledger_index WHERE event_id IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            for row in c.fetchall():
                found[UUID(bytes=bytes(row[0]))] = (row[1], bytes(row[2]))
        return found

    @staticmethod
    def _select_events_of(c: SQLiteCursor, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        events: list[StoredEvent] = []
        for i in range(0, len(originator_ids), _CHUNK):
            chunk = [o.hex for o in originator_ids[i : i + _CHUNK]]
            c.execute(
                "SELECT originator_id, originator_version, topic, state FROM stored_events "
                f"WHERE originator_id IN ({','.join('?' * len(chunk))}) "
                "ORDER BY originator_id, originator_version",
                chunk,
            )
            events.extend(StoredEvent(UUID(r[0]), r[1], r[2], bytes(r[3])) for r in c.fetchall())
        return events

    def head(self, district_id: str, as_of: int | None = None) -> tuple[int, str] | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT position, chain_hash FROM ledger_index WHERE district_id=? "
                "AND position<=? ORDER BY position DESC LIMIT 1",
                (district_id, as_of if as_of is not None else 2**62),
            )
            row = c.fetchone()
        return (row[0], row[1]) if row else None

    def chained_events(
        self, district_id: str | None, after: int, limit: int, originator_id: UUID | None = None
    ) -> list[tuple[int, str | None, str | None, StoredEvent | None]]:
        """Stored events joined with their index rows in position order (either side may lack)."""
        where, params = ["s.rowid > ?"], [after]
        if district_id is not None:
            where.append("l.district_id = ?")
            params.append(district_id)  # type: ignore[arg-type]
        if originator_id is not None:
            where.append("s.originator_id = ?")
            params.append(originator_id.hex)  # type: ignore[arg-type]
        sql = (
            "SELECT s.rowid AS position, l.district_id, l.chain_hash, s.originator_id, "
            "s.originator_version, s.topic, s.state FROM stored_events s "
            "LEFT JOIN ledger_index l ON l.position = s.rowid "
            f"WHERE {' AND '.join(where)} ORDER BY s.rowid LIMIT ?"
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, [*params, limit])
            return [
                (
                    r["position"],
                    r["district_id"],
                    r["chain_hash"],
                    StoredEvent(
                        UUID(r["originator_id"]),
                        r["originator_version"],
                        r["topic"],
                        bytes(r["state"]),
                    ),
                )
                for r in c.fetchall()
            ]


class PostgresLedgerRecorder(PostgresApplicationRecorder):
    """PostgreSQL recorder that also maintains the ledger index in the append transaction."""

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        self.index_table = SQL("{}.ledger_index").format(schema)
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, "
                    "event_id uuid NOT NULL, district_id text NOT NULL, digest bytea NOT NULL, "
                    "chain_hash text NOT NULL)"
                ).format(self.index_table),
                SQL(
                    "CREATE UNIQUE INDEX IF NOT EXISTS ledger_index_event_id ON {} (event_id)"
                ).format(self.index_table),
                SQL(
                    "CREATE INDEX IF NOT EXISTS ledger_index_district ON {} (district_id, position)"
                ).format(self.index_table),
            ]
        )

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        assert positions is not None
        entries: list[LedgerEntry] = kwargs.get("ledger_entries") or []
        heads: dict[str, str] = {}
        for district in {e.district_id for e in entries}:
            curs.execute(
                SQL(
                    "SELECT chain_hash FROM {} WHERE district_id=%s ORDER BY position DESC LIMIT 1"
                ).format(self.index_table),
                (district,),
            )
            row = curs.fetchone()
            heads[district] = row["chain_hash"] if row else GENESIS_HASH
        rows = _index_rows(stored_events, positions, entries, heads)
        columns = list(zip(*rows, strict=True))
        # One statement whose own result we fetch: the pipeline syncs here, so a duplicate
        # event_id surfaces now as an IntegrityError (and rolls the whole append back).
        curs.execute(
            SQL(
                "INSERT INTO {} SELECT * FROM unnest(%s::bigint[], %s::uuid[], %s::text[], "
                "%s::bytea[], %s::text[]) RETURNING position"
            ).format(self.index_table),
            (
                list(columns[0]),
                [UUID(bytes=e) for e in columns[1]],
                list(columns[2]),
                list(columns[3]),
                list(columns[4]),
            ),
        )
        if len(curs.fetchall()) != len(rows):
            raise ProgrammingError("ledger index rows were not all written")
        return positions

    def read_batch(
        self, originator_ids: Sequence[UUID], event_ids: Sequence[UUID]
    ) -> tuple[list[StoredEvent], dict[UUID, tuple[int, bytes]]]:
        """Sessions and already-stored event ids from one REPEATABLE READ snapshot."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return self._select_events_of(curs, originator_ids), self._lookup(curs, event_ids)

    def lookup_event_ids(self, event_ids: Sequence[UUID]) -> dict[UUID, tuple[int, bytes]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return self._lookup(curs, event_ids)

    def _lookup(
        self, curs: Cursor[DictRow], event_ids: Sequence[UUID]
    ) -> dict[UUID, tuple[int, bytes]]:
        found: dict[UUID, tuple[int, bytes]] = {}
        for i in range(0, len(event_ids), _CHUNK):
            curs.execute(
                SQL("SELECT event_id, position, digest FROM {} WHERE event_id = ANY(%s)").format(
                    self.index_table
                ),
                (list(event_ids[i : i + _CHUNK]),),
            )
            for row in curs.fetchall():
                found[row["event_id"]] = (row["position"], bytes(row["digest"]))
        return found

    def _select_events_of(
        self, curs: Cursor[DictRow], originator_ids: Sequence[UUID]
    ) -> list[StoredEvent]:
        events: list[StoredEvent] = []
        table = SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        for i in range(0, len(originator_ids), _CHUNK):
            curs.execute(
                SQL(
                    "SELECT originator_id, originator_version, topic, state FROM {} "
                    "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
                ).format(table),
                (list(originator_ids[i : i + _CHUNK]),),
            )
            events.extend(
                StoredEvent(
                    r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])
                )
                for r in curs.fetchall()
            )
        return events

    def head(self, district_id: str, as_of: int | None = None) -> tuple[int, str] | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT position, chain_hash FROM {} WHERE district_id=%s AND position<=%s "
                    "ORDER BY position DESC LIMIT 1"
                ).format(self.index_table),
                (district_id, as_of if as_of is not None else 2**62),
            )
            row = curs.fetchone()
        return (row["position"], row["chain_hash"]) if row else None

    def chained_events(
        self, district_id: str | None, after: int, limit: int, originator_id: UUID | None = None
    ) -> list[tuple[int, str | None, str | None, StoredEvent | None]]:
        """Stored events joined with their index rows in position order (either side may lack)."""
        where, params = [SQL("s.notification_id > %s")], [after]
        if district_id is not None:
            where.append(SQL("l.district_id = %s"))
            params.append(district_id)  # type: ignore[arg-type]
        if originator_id is not None:
            where.append(SQL("s.originator_id = %s"))
            params.append(originator_id)  # type: ignore[arg-type]
        sql = SQL(
            "SELECT s.notification_id AS position, l.district_id, l.chain_hash, s.originator_id, "
            "s.originator_version, s.topic, s.state FROM {}.{} s "
            "LEFT JOIN {} l ON l.position = s.notification_id WHERE {} "
            "ORDER BY s.notification_id LIMIT %s"
        ).format(
            Identifier(self.datastore.schema),
            Identifier(self.events_table_name),
            self.index_table,
            SQL(" AND ").join(where),
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(sql, [*params, limit])
            return [
                (
                    r["position"],
                    r["district_id"],
                    r["chain_hash"],
                    StoredEvent(
                        r["originator_id"],
                        r["originator_version"],
                        r["topic"],
                        bytes(r["state"]),
                    ),
                )
                for r in curs.fetchall()
            ]


def store_env(url: str) -> dict[str, str]:
    """Translate our store URL into the eventsourcing library's configuration."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url.removeprefix("sqlite://")
        path = path[1:] if path.startswith("/./") or path.startswith("//") else path
        if path not in (":memory:", "/:memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": "tutorledger.infra.store:SQLiteLedgerRecorder",
        }
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parsed.path.lstrip("/") or "ledger",
        "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parsed.port or 5432),
        "POSTGRES_USER": unquote(parsed.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parsed.password or ""),
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "4",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "APPLICATION_RECORDER_TOPIC": "tutorledger.infra.store:PostgresLedgerRecorder",
    }


def open_ledger(settings: Settings) -> Ledger:
    """Build the Ledger application on the configured store (creating tables if needed)."""
    return Ledger(env=store_env(settings.event_store))
