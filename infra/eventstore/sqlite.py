"""SQLite recorder that also maintains the ledger index in the append transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ProgrammingError, StoredEvent
from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteApplicationRecorder, SQLiteCursor

from tutorledger.domain.batch import BatchSnapshot, LedgerEntry
from tutorledger.infra.eventstore.ledger_index import GENESIS_HASH, index_rows
from tutorledger.infra.eventstore.vault_sqlite import VAULT_TABLES, SQLiteVault, rows_in_chunks
from tutorledger.infra.eventstore.write_turns import FileTurns

# Pages the write-ahead log may hold before a commit copies them back into the database file
# (SQLite's default is 1,000, about 4 MB). Each append dirties pages of several randomly-keyed
# indexes (event ids, sessions, student tokens), so at the default nearly every batch paid for
# a checkpoint that rewrote the same pages again and again; at 20,000 (about 80 MB of log) a
# page is copied back once for many batches. Durability is unchanged: every commit still
# syncs the log. Larger was slower again (readers search a longer log).
WAL_CHECKPOINT_PAGES = 20_000


class SQLiteLedgerRecorder(SQLiteVault, SQLiteApplicationRecorder):
    """SQLite recorder that also maintains the ledger index and the student key table in the
    append transaction."""

    def __init__(self, datastore: Any, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        pool = datastore.pool
        self.turns = FileTurns(None if pool.is_sqlite_memory_mode else pool.db_name)

    @contextmanager
    def exclusive_writes(self) -> Iterator[None]:
        """No other process commits an append while this is held (see write_turns.py)."""
        with self.turns.exclusive():
            yield

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # The shared turn is taken before the write transaction begins: a writer waiting for
        # it must not hold SQLite's write lock, which the exclusive holder will need.
        with self.turns.shared():
            return super().insert_events(stored_events, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS ledger_index ("
            "position INTEGER PRIMARY KEY, event_id BLOB NOT NULL, district_id TEXT NOT NULL, "
            "digest BLOB NOT NULL, chain_hash TEXT NOT NULL)",
            "CREATE UNIQUE INDEX IF NOT EXISTS ledger_index_event_id ON ledger_index (event_id)",
            "CREATE INDEX IF NOT EXISTS ledger_index_district ON ledger_index "
            "(district_id, position)",
            *VAULT_TABLES,
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # A connection setting, not transactional: set on whichever pooled connection writes.
        c.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        positions = self._insert_stored(c, stored_events)
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
            index_rows(stored_events, positions, entries, heads),
        )
        self._write_keys(c, kwargs.get("key_writes"))
        return positions

    def _insert_stored(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent]) -> list[int]:
        """The library's rows, one `executemany` instead of one `execute` per event (which
        cost as much as the index); positions (rowids) are read back once. Inside the write
        transaction each new row gets the table's largest rowid + 1, so a batch's rowids run
        consecutively up to `last_insert_rowid()`; the first row's rowid is checked anyway
        (SQLite picks random rowids once the largest is taken)."""
        if not stored_events:
            return []
        # The aggregate recorder's insert is that one executemany; the application
        # recorder's override inserts row by row to read each position back.
        SQLiteAggregateRecorder._insert_events(self, c, stored_events)
        c.execute("SELECT last_insert_rowid()")
        last = int(c.fetchone()[0])
        first, head = last - len(stored_events) + 1, stored_events[0]
        c.execute(
            f"SELECT rowid FROM {self.events_table_name} "
            "WHERE originator_id=? AND originator_version=?",
            (UUID(str(head.originator_id)).hex, head.originator_version),
        )
        row = c.fetchone()
        if row is None or row[0] != first:
            raise ProgrammingError("stored events did not get consecutive positions")
        return list(range(first, last + 1))

    def read_batch(
        self,
        originator_ids: Sequence[UUID],
        event_ids: Sequence[UUID],
        students: Sequence[tuple[str, str]] = (),
        known: Sequence[UUID] = (),
    ) -> BatchSnapshot:
        """Sessions, stored event ids and student keys from one snapshot (one transaction)."""
        with self.datastore.transaction(commit=False) as c:
            stored = self._select_events_of(c, originator_ids)
            versions = self._versions_of(c, known)
            seen = self._lookup(c, event_ids)
            keys, tokens = self._read_keys(c, [*originator_ids, *known], students)
            return BatchSnapshot(stored, seen, keys, tokens, versions)

    @staticmethod
    def _versions_of(c: SQLiteCursor, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The stored version of each session (from the primary key's index alone)."""
        sql = (
            "SELECT originator_id, MAX(originator_version) FROM stored_events "
            "WHERE originator_id IN ({marks}) GROUP BY originator_id"
        )
        rows = rows_in_chunks(c, sql, [o.hex for o in originator_ids])
        return {UUID(r[0]): r[1] for r in rows}

    def lookup_event_ids(self, event_ids: Sequence[UUID]) -> dict[UUID, tuple[int, bytes]]:
        with self.datastore.transaction(commit=False) as c:
            return self._lookup(c, event_ids)

    @staticmethod
    def _lookup(c: SQLiteCursor, event_ids: Sequence[UUID]) -> dict[UUID, tuple[int, bytes]]:
        sql = "SELECT event_id, position, digest FROM ledger_index WHERE event_id IN ({marks})"
        rows = rows_in_chunks(c, sql, [e.bytes for e in event_ids])
        return {UUID(bytes=bytes(r[0])): (r[1], bytes(r[2])) for r in rows}

    @staticmethod
    def _select_events_of(c: SQLiteCursor, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        sql = (
            "SELECT originator_id, originator_version, topic, state FROM stored_events "
            "WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version"
        )
        rows = rows_in_chunks(c, sql, [o.hex for o in originator_ids])
        return [StoredEvent(UUID(r[0]), r[1], r[2], bytes(r[3])) for r in rows]

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
        where = ["s.rowid > ?"]
        params: list[object] = [after]
        if district_id is not None:
            where.append("l.district_id = ?")
            params.append(district_id)
        if originator_id is not None:
            where.append("s.originator_id = ?")
            params.append(originator_id.hex)
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

    def event_states(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """(position, stored state) of the next `limit` events after `after`: a page read
        with no per-event objects, for bulk replays (rebuild)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT rowid, state FROM stored_events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                [after, limit],
            )
            return [(r[0], r[1]) for r in c.fetchall()]
