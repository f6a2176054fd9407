"""PostgreSQL recorder that also maintains the ledger index in the append transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from tutorledger.domain.batch import BatchSnapshot, LedgerEntry
from tutorledger.infra.eventstore.ledger_index import CHUNK, GENESIS_HASH, index_rows
from tutorledger.infra.eventstore.vault import chunked
from tutorledger.infra.eventstore.vault_postgres import (
    PostgresVault,
    json_rows,
    uuid_array,
    vault_tables,
)
from tutorledger.infra.eventstore.write_turns import PostgresTurns

# Any constant shared by every tutorledger process: the key of the schema-creation lock.
SCHEMA_LOCK = 0x74757472


def create_tables_in_turn(datastore: Any, create: Any) -> None:
    """Run `create` holding a session advisory lock. `CREATE TABLE IF NOT EXISTS` is not safe
    against itself: two processes creating one table at once fail on pg_type's unique index
    (seen with `serve --workers N` starting on a fresh database), so they take turns."""
    with datastore.get_connection() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            create()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))


class PostgresLedgerTrackingRecorder(PostgresTrackingRecorder):
    """The library's tracking recorder, creating its table in turn with other processes."""

    def create_table(self) -> None:
        create_tables_in_turn(self.datastore, super().create_table)


class PostgresLedgerRecorder(PostgresVault, PostgresApplicationRecorder):
    """PostgreSQL recorder that also maintains the ledger index and the student key table in
    the append transaction."""

    def create_table(self) -> None:
        create_tables_in_turn(self.datastore, super().create_table)

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.turns = PostgresTurns(datastore)
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
                *vault_tables(self.datastore.schema),
            ]
        )
        self._insert_json = SQL(
            "INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
            "SELECT (r.v->>0)::uuid, (r.v->>1)::bigint, r.v->>2, decode(r.v->>3, 'hex') "
            "FROM json_array_elements(%s::json) WITH ORDINALITY AS r(v, i) ORDER BY r.i "
            "RETURNING notification_id"
        ).format(schema, Identifier(self.events_table_name))

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        """The library's insert (table lock, notify, one INSERT … RETURNING notification_id,
        in the given order), its rows sent as one JSON text rather than an array of
        composites that psycopg dumps field by field in Python."""
        shared_turn = self.turns.shared_statement()  # before the table lock: see write_turns
        if shared_turn is not None:
            curs.execute(shared_turn)
        self._lock_table(curs)
        self._notify_channel(curs)
        rows = [(str(s.originator_id), s.originator_version, s.topic, s.state.hex())
                for s in stored_events]  # fmt: skip
        curs.execute(self._insert_json, (json_rows(rows),))

    @contextmanager
    def exclusive_writes(self) -> Iterator[None]:
        """No other process commits an append while this is held (see write_turns.py)."""
        with self.turns.exclusive():
            yield

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
        rows = index_rows(stored_events, positions, entries, heads)
        # One statement whose own result we fetch: the pipeline syncs here, so a duplicate
        # event_id surfaces now as an IntegrityError (and rolls the whole append back). The
        # rows travel as one JSON text (written in C, parsed by the server): dumping five
        # arrays element by element cost more than the rest of the append.
        curs.execute(
            SQL(
                "INSERT INTO {} SELECT (r->>0)::bigint, (r->>1)::uuid, r->>2, "
                "decode(r->>3, 'hex'), r->>4 FROM json_array_elements(%s::json) r "
                "RETURNING position"
            ).format(self.index_table),
            (json_rows([(p, e.hex(), d, digest.hex(), h) for p, e, d, digest, h in rows]),),
        )
        if len(curs.fetchall()) != len(rows):
            raise ProgrammingError("ledger index rows were not all written")
        self._write_keys(curs, kwargs.get("key_writes"))
        return positions

    def read_batch(
        self,
        originator_ids: Sequence[UUID],
        event_ids: Sequence[UUID],
        students: Sequence[tuple[str, str]] = (),
        known: Sequence[UUID] = (),
    ) -> BatchSnapshot:
        """Sessions, stored event ids and student keys from one REPEATABLE READ snapshot."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            stored = self._select_events_of(curs, originator_ids)
            versions = self._versions_of(curs, known)
            seen = self._lookup(curs, event_ids)
            keys, tokens = self._read_keys(curs, [*originator_ids, *known], students)
            return BatchSnapshot(stored, seen, keys, tokens, versions)

    def _versions_of(
        self, curs: Cursor[DictRow], originator_ids: Sequence[UUID]
    ) -> dict[UUID, int]:
        """The stored version of each session (from the primary key's index alone)."""
        query = SQL(
            "SELECT originator_id, MAX(originator_version) AS version FROM {} "
            "WHERE originator_id = ANY(%s::uuid[]) GROUP BY originator_id"
        ).format(self._events_table())
        return {r["originator_id"]: r["version"] for r in _rows_by_ids(curs, query, originator_ids)}

    def lookup_event_ids(self, event_ids: Sequence[UUID]) -> dict[UUID, tuple[int, bytes]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return self._lookup(curs, event_ids)

    def _lookup(
        self, curs: Cursor[DictRow], event_ids: Sequence[UUID]
    ) -> dict[UUID, tuple[int, bytes]]:
        query = SQL(
            "SELECT event_id, position, digest FROM {} WHERE event_id = ANY(%s::uuid[])"
        ).format(self.index_table)
        rows = _rows_by_ids(curs, query, event_ids)
        return {r["event_id"]: (r["position"], bytes(r["digest"])) for r in rows}

    def _select_events_of(
        self, curs: Cursor[DictRow], originator_ids: Sequence[UUID]
    ) -> list[StoredEvent]:
        query = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = ANY(%s::uuid[]) ORDER BY originator_id, originator_version"
        ).format(self._events_table())
        return [
            StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
            for r in _rows_by_ids(curs, query, originator_ids)
        ]

    def _events_table(self) -> Composed:
        return SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )

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
        where = [SQL("s.notification_id > %s")]
        params: list[object] = [after]
        if district_id is not None:
            where.append(SQL("l.district_id = %s"))
            params.append(district_id)
        if originator_id is not None:
            where.append(SQL("s.originator_id = %s"))
            params.append(originator_id)
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

    def event_states(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """(position, stored state) of the next `limit` events after `after`: a page read
        with no per-event objects (tuple rows), for bulk replays (rebuild). Binary results:
        the states arrive as they are stored, not as hex text to decode (half the bytes, and
        less than half the client's CPU per page)."""
        sql = SQL(
            "SELECT notification_id, state FROM {}.{} WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row, binary=True) as curs,
        ):
            curs.execute(sql, (after, limit))
            rows: list[tuple[int, bytes]] = curs.fetchall()
            return rows


def _rows_by_ids(curs: Cursor[DictRow], query: Composed, ids: Sequence[UUID]) -> Iterator[DictRow]:
    """The rows of `query` (taking one uuid[] parameter) over `ids`, CHUNK at a time."""
    for chunk in chunked(list(ids), CHUNK):
        curs.execute(query, (uuid_array(chunk),))
        yield from curs.fetchall()
