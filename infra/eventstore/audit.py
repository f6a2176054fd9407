"""Chain verification: recompute every district's hash chain from the event store.

The store keeps, beside each stored event, a `ledger_index` row with the district and
the chain value written at append time. Verification trusts neither: it decodes each
stored event, recomputes `chain_hash(prev, position, envelope)` per district in position
order and compares. It reads in keyset pages, so memory stays bounded whatever the size.

What it catches, and where it points:
- a changed payload, or swapped rows: the recomputed hash differs at that position;
- an event deleted with its index row: the chain diverges at the district's next event;
- an event deleted but its index row left: that position (`event_missing`);
- an index row deleted but the event left: that position (`index_missing`);
- an index row moved to another district: that position (`district_mismatch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, StoredEvent
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from tutorledger.infra.eventstore.ledger_index import GENESIS_HASH, chain_hash
from tutorledger.infra.eventstore.postgres import PostgresLedgerRecorder
from tutorledger.infra.eventstore.recorders import ledger_recorder
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder

PAGE = 5000


@dataclass(frozen=True)
class ChainRow:
    """One index row with its stored event (None when the event itself is gone)."""

    position: int
    district_id: str
    chain_hash: str
    stored: StoredEvent | None


class ChainScan(Protocol):
    """Position-ordered reads of the index joined to the events, for one store backend."""

    def head(self) -> int:
        """Highest indexed position (0 when empty)."""
        ...

    def count(self, district_id: str | None, upto: int) -> int:
        """Index rows at or below `upto` (the verification's total, for progress)."""
        ...

    def rows(self, district_id: str | None, after: int, upto: int, limit: int) -> list[ChainRow]:
        """Index rows in (after, upto], in position order, each with its stored event."""
        ...

    def orphans(self, after: int, upto: int, limit: int) -> list[tuple[int, StoredEvent]]:
        """Stored events in (after, upto] that have no index row, in position order."""
        ...


class _SQLiteScan:
    def __init__(self, recorder: SQLiteLedgerRecorder) -> None:
        self.recorder = recorder

    def _all(self, sql: str, params: list[Any]) -> list[Any]:
        with self.recorder.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return list(c.fetchall())

    def head(self) -> int:
        return int(self._all("SELECT max(position) FROM ledger_index", [])[0][0] or 0)

    def count(self, district_id: str | None, upto: int) -> int:
        where, params = _where(district_id, upto)
        return int(self._all(f"SELECT count(*) FROM ledger_index l WHERE {where}", params)[0][0])

    def rows(self, district_id: str | None, after: int, upto: int, limit: int) -> list[ChainRow]:
        where, params = _where(district_id, upto)
        sql = (
            "SELECT l.position, l.district_id, l.chain_hash, s.originator_id, "
            "s.originator_version, s.topic, s.state FROM ledger_index l "
            "LEFT JOIN stored_events s ON s.rowid = l.position "
            f"WHERE l.position > ? AND {where} ORDER BY l.position LIMIT ?"
        )
        return [_chain_row(r) for r in self._all(sql, [after, *params, limit])]

    def orphans(self, after: int, upto: int, limit: int) -> list[tuple[int, StoredEvent]]:
        sql = (
            "SELECT s.rowid, s.originator_id, s.originator_version, s.topic, s.state "
            "FROM stored_events s WHERE s.rowid > ? AND s.rowid <= ? AND NOT EXISTS "
            "(SELECT 1 FROM ledger_index l WHERE l.position = s.rowid) ORDER BY s.rowid LIMIT ?"
        )
        return [(r[0], _stored(*r[1:])) for r in self._all(sql, [after, upto, limit])]


class _PostgresScan:
    def __init__(self, recorder: PostgresLedgerRecorder) -> None:
        self.recorder = recorder
        schema = Identifier(recorder.datastore.schema)
        self.index = SQL("{}.ledger_index").format(schema)
        self.events = SQL("{}.{}").format(schema, Identifier(recorder.events_table_name))

    def _all(self, sql: Composed, params: list[Any]) -> list[Any]:
        with (
            self.recorder.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(sql, params)
            rows: list[Any] = curs.fetchall()
            return rows

    def head(self) -> int:
        rows = self._all(SQL("SELECT max(position) FROM {}").format(self.index), [])
        return int(rows[0][0] or 0)

    def count(self, district_id: str | None, upto: int) -> int:
        where, params = _pg_where(district_id, upto)
        sql = SQL("SELECT count(*) FROM {} l WHERE {}").format(self.index, where)
        return int(self._all(sql, params)[0][0])

    def rows(self, district_id: str | None, after: int, upto: int, limit: int) -> list[ChainRow]:
        where, params = _pg_where(district_id, upto)
        sql = SQL(
            "SELECT l.position, l.district_id, l.chain_hash, s.originator_id, "
            "s.originator_version, s.topic, s.state FROM {} l "
            "LEFT JOIN {} s ON s.notification_id = l.position "
            # The same range on the events side: without it the merge join re-reads the
            # events table from the start on every page (quadratic over a large ledger).
            "AND s.notification_id > %s AND s.notification_id <= %s "
            "WHERE l.position > %s AND {} ORDER BY l.position LIMIT %s"
        ).format(self.index, self.events, where)
        return [_chain_row(r) for r in self._all(sql, [after, upto, after, *params, limit])]

    def orphans(self, after: int, upto: int, limit: int) -> list[tuple[int, StoredEvent]]:
        sql = SQL(
            "SELECT s.notification_id, s.originator_id, s.originator_version, s.topic, s.state "
            "FROM {} s WHERE s.notification_id > %s AND s.notification_id <= %s AND NOT EXISTS "
            "(SELECT 1 FROM {} l WHERE l.position = s.notification_id) "
            "ORDER BY s.notification_id LIMIT %s"
        ).format(self.events, self.index)
        return [(r[0], _stored(*r[1:])) for r in self._all(sql, [after, upto, limit])]


def _where(district_id: str | None, upto: int) -> tuple[str, list[Any]]:
    if district_id is None:
        return "l.position <= ?", [upto]
    return "l.position <= ? AND l.district_id = ?", [upto, district_id]


def _pg_where(district_id: str | None, upto: int) -> tuple[SQL, list[Any]]:
    if district_id is None:
        return SQL("l.position <= %s"), [upto]
    return SQL("l.position <= %s AND l.district_id = %s"), [upto, district_id]


def _stored(originator_id: Any, version: int, topic: str, state: Any) -> StoredEvent:
    # A tampered SQLite row may hold TEXT where a BLOB was written: still its bytes.
    raw = state.encode() if isinstance(state, str) else bytes(state)
    key = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
    return StoredEvent(key, version, topic, raw)


def _chain_row(r: Any) -> ChainRow:
    stored = None if r[3] is None else _stored(*r[3:7])
    return ChainRow(int(r[0]), r[1], r[2], stored)


def chain_scan(recorder: ApplicationRecorder) -> ChainScan:
    """The scan for the recorder's backend (SQLite or PostgreSQL)."""
    ours = ledger_recorder(recorder)
    if isinstance(ours, SQLiteLedgerRecorder):
        return _SQLiteScan(ours)
    return _PostgresScan(ours)


def iter_rows(
    scan: ChainScan, district_id: str | None, upto: int, page: int = PAGE
) -> Iterator[ChainRow]:
    """Every index row up to `upto` in position order, one page in memory at a time."""
    after = 0
    while rows := scan.rows(district_id, after, upto, page):
        yield from rows
        after = rows[-1].position


@dataclass
class VerifyReport:
    """The outcome: `checked` counts events whose recomputed hash matched, up to the first
    bad one; the head is the last good event (for one district: that district's head)."""

    ok: bool
    checked: int
    head_position: int | None
    head_hash: str | None
    first_bad_position: int | None = None
    problem: str | None = None
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": self.ok,
            "checked": self.checked,
            "head_position": self.head_position,
            "head_hash": self.head_hash,
        }
        if not self.ok:
            body["first_bad_position"] = self.first_bad_position
            body["problem"] = self.problem
        return body


def _first_orphan(
    scan: ChainScan, mapper: Mapper[UUID], district_id: str | None, upto: int
) -> int | None:
    """Lowest position of a stored event of the district that has no index row."""
    after = 0
    while found := scan.orphans(after, upto, PAGE):
        for position, stored in found:
            if district_id is None or _district_of(mapper, stored) in (district_id, None):
                return position
        after = found[-1][0]
    return None


def _district_of(mapper: Mapper[UUID], stored: StoredEvent) -> str | None:
    try:
        return str(envelope_of(mapper, stored)["district_id"])
    except Exception:  # undecodable: cannot tell, so it counts against every district
        return None


def envelope_of(mapper: Mapper[UUID], stored: StoredEvent) -> dict[str, Any]:
    """The canonical envelope a stored event carries: what its chain hash was taken over."""
    event: Any = mapper.to_domain_event(stored)
    envelope: dict[str, Any] = event.envelope
    return envelope


def _check(row: ChainRow, mapper: Mapper[UUID], prev: str) -> tuple[str | None, str]:
    """(problem or None, recomputed hash) for one index row."""
    if row.stored is None:
        return "event_missing", ""
    try:
        envelope = envelope_of(mapper, row.stored)
    except Exception:  # corrupt bytes are tampering too, not a crash
        return "undecodable", ""
    if envelope.get("district_id") != row.district_id:
        return "district_mismatch", ""
    computed = chain_hash(prev, row.position, envelope)
    return (None if computed == row.chain_hash else "hash_mismatch"), computed


def verify_chain(
    recorder: ApplicationRecorder,
    mapper: Mapper[UUID],
    district_id: str | None = None,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    page: int = PAGE,
) -> VerifyReport:
    """Recompute the chain(s) up to the store's head now; stop at the first bad position."""
    started = time.perf_counter()
    scan = chain_scan(recorder)
    upto = scan.head()
    if on_start is not None:
        on_start(scan.count(district_id, upto))
    orphan = _first_orphan(scan, mapper, district_id, upto)
    report = VerifyReport(ok=True, checked=0, head_position=None, head_hash=None)
    pending = 0
    for row in iter_rows(scan, district_id, upto, page):
        if orphan is not None and row.position > orphan:
            break
        prev = report.heads.get(row.district_id, (0, GENESIS_HASH))[1]
        problem, computed = _check(row, mapper, prev)
        if problem is not None:
            report.ok, report.first_bad_position, report.problem = False, row.position, problem
            break
        report.heads[row.district_id] = (row.position, computed)
        report.checked += 1
        report.head_position, report.head_hash = row.position, computed
        pending += 1
        if on_progress is not None and pending == page:
            on_progress(pending)
            pending = 0
    if on_progress is not None and pending:
        on_progress(pending)
    if report.ok and orphan is not None:
        report.ok, report.first_bad_position, report.problem = False, orphan, "index_missing"
    report.seconds = time.perf_counter() - started
    return report
