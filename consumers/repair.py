"""Find ledger events the projections lack below the position they claim complete; fill them in.

Nothing in our own pipeline skips an event: the relay advances only on the broker's
acknowledgement, the projector commits offsets only after ClickHouse took the rows. But an
acknowledgement is only as good as the broker. A broker that acknowledges a record and then
loses it (a crash between its writes; an unclean leader election) leaves a hole *below* the
watermarks that follow it: `/readyz` says caught up while figures miss events. This finds
such holes by comparing positions, the ledger's index against `ledger_events`, window by
window (counts first, lists only where counts differ), and the read models against the raw
rows (the metrics read the read models), and repairs them by projecting the missing events
straight from the ledger through the projectors' writer. Every table skips positions it
holds, and a copy stored by a repair racing a late redelivery (both checked before either
inserted) is collapsed where the metrics read it, so each event counts once. Positions are
filled in ascending order, so a lost request is written before its lost steps, and a step
whose request is present finds it in the read model: the writer never waits here.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from tutorledger.consumers.projector import decode
from tutorledger.domain.cohort import COHORT_EVENT_TYPE
from tutorledger.domain.grades import GRADE_EVENT_TYPE
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.infra.eventstore.positions import bucket_counts, positions_between
from tutorledger.projections.read_models import SCHOOL_UPDATED, current_tables
from tutorledger.projections.rows import event_row
from tutorledger.projections.steps import SESSION_TYPES
from tutorledger.projections.writer import ReadModelWriter

WINDOW = 65_536
SHOWN = 1000  # positions listed in a report; the counts are always complete

PROJECTED_BUCKETS_SQL = """
SELECT intDiv(position, %(width)s) AS bucket, uniqExact(position)
FROM ledger_events WHERE position <= %(upto)s GROUP BY bucket
"""
PROJECTED_POSITIONS_SQL = """
SELECT DISTINCT position FROM ledger_events
WHERE position > %(after)s AND position <= %(upto)s ORDER BY position
"""
# Raw rows a read model should hold but does not (the metrics read the read models).
READ_MODEL_GAPS_SQL = """
SELECT DISTINCT position FROM ledger_events
WHERE position <= %(upto)s AND type IN %(types)s
  AND position NOT IN (SELECT position FROM {table} WHERE position <= %(upto)s)
ORDER BY position
"""


@dataclass
class GapReport:
    """Positions up to `upto` in the ledger but not projected (`missing`), and the reverse."""

    upto: int
    missing: list[int] = field(default_factory=list)
    unexpected: list[int] = field(default_factory=list)
    read_model_missing: list[int] = field(default_factory=list)
    repaired: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected and not self.read_model_missing

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked_upto": self.upto,
            "missing": len(self.missing),
            "missing_positions": self.missing[:SHOWN],
            "unexpected": len(self.unexpected),
            "unexpected_positions": self.unexpected[:SHOWN],
            "read_model_missing": len(self.read_model_missing),
            "read_model_missing_positions": self.read_model_missing[:SHOWN],
            "repaired": self.repaired,
        }


def find_gaps(
    recorder: ApplicationRecorder, store: ProjectionStore, upto: int, width: int = WINDOW
) -> GapReport:
    """Compare ledger and projected positions in (0, upto]; memory bounded by `width`."""
    report = GapReport(upto)
    ours = bucket_counts(recorder, upto, width)
    rows = store.execute(PROJECTED_BUCKETS_SQL, {"width": width, "upto": upto})
    theirs = {int(b): int(n) for b, n in rows}
    for bucket in sorted(set(ours) | set(theirs)):
        if ours.get(bucket, 0) == theirs.get(bucket, 0):
            continue
        after, last = bucket * width - 1, min(upto, (bucket + 1) * width - 1)
        ledger = set(positions_between(recorder, after, last))
        params = {"after": after, "upto": last}
        projected = {int(r[0]) for r in store.execute(PROJECTED_POSITIONS_SQL, params)}
        report.missing.extend(sorted(ledger - projected))
        report.unexpected.extend(sorted(projected - ledger))
    report.read_model_missing = read_model_gaps(store, upto)
    return report


def read_model_gaps(store: ProjectionStore, upto: int) -> list[int]:
    """Raw rows in (0, upto] whose read-model row is absent (session steps, school updates,
    cohort updates, grades)."""
    tables = current_tables(store)
    found: set[int] = set()
    for table, types in (
        (tables.facts, SESSION_TYPES),
        (tables.schools, (SCHOOL_UPDATED,)),
        (tables.cohorts, (COHORT_EVENT_TYPE,)),
        (tables.grades, (GRADE_EVENT_TYPE,)),
    ):
        sql = READ_MODEL_GAPS_SQL.format(table=table)
        found |= {int(r[0]) for r in store.execute(sql, {"upto": upto, "types": types})}
    return sorted(found)


def runs(positions: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive stretches of sorted positions as (first, last)."""
    start = prev = None
    for p in positions:
        if start is None or prev is None or p != prev + 1:
            if start is not None and prev is not None:
                yield start, prev
            start = p
        prev = p
    if start is not None and prev is not None:
        yield start, prev


def fill(ledger: Ledger, store: ProjectionStore, positions: list[int], batch: int = 5000) -> int:
    """Project the events at `positions` from the ledger through the projectors' writer (the
    read models and the raw rows, skipping what is already there); returns the rows. Each
    step reads up to `batch` ledger events from the next wanted position on and writes the
    wanted ones, so scattered holes (one partition behind the others: every third
    position) go in batches, not one short stretch at a time."""
    wanted = set(positions)
    ordered = sorted(wanted)
    writer = ReadModelWriter(store)
    inserted, index = 0, 0
    while index < len(ordered):
        notes = ledger.recorder.select_notifications(
            start=ordered[index], limit=batch, stop=ordered[-1]
        )
        if not notes:
            break
        rows = [event_row(n.id, decode(ledger, n)) for n in notes if n.id in wanted]
        writer.write(rows)
        inserted += len(rows)
        index = bisect_right(ordered, int(notes[-1].id))
    return inserted


def repair(
    ledger: Ledger, store: ProjectionStore, upto: int, *, dry_run: bool = False
) -> GapReport:
    """Find the gaps up to `upto` and, unless `dry_run`, fill them from the ledger."""
    report = find_gaps(ledger.recorder, store, upto)
    wanted = sorted(set(report.missing) | set(report.read_model_missing))
    if wanted and not dry_run:
        report.repaired = fill(ledger, store, wanted)
    return report
