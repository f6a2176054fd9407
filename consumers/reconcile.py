"""Reconcile: per-district, per-day event counts in the ledger versus the projections.

A day is the **UTC calendar date of `occurred_at`**: both sides hold that instant in UTC,
so the comparison needs no time-zone table that could itself drift. The projections are
counted by distinct ledger position, so redelivered rows (collapsed by ReplacingMergeTree,
maybe not merged yet) never pass for extra events, and a missing row always shows.
Both sides are limited to the same ledger position, so later appends are not drift.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.infra.eventstore.audit import chain_scan, envelope_of, iter_rows

Key = tuple[str, date]

PROJECTED_COUNTS_SQL = """
SELECT district_id, toDate(occurred_at, 'UTC') AS day, uniqExact(position) AS events
FROM ledger_events
WHERE position <= %(upto)s AND (%(district_id)s = '' OR district_id = %(district_id)s)
GROUP BY district_id, day
"""


@dataclass(frozen=True)
class Drift:
    """One district-day whose counts differ (`missing` > 0: the projections lack events)."""

    district_id: str
    day: date
    ledger: int
    projections: int

    @property
    def missing(self) -> int:
        return self.ledger - self.projections


@dataclass
class ReconcileReport:
    """Counts compared up to `position`; `ok` when no district-day differs."""

    position: int
    ledger_events: int = 0
    projected_events: int = 0
    days: int = 0
    drift: list[Drift] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.drift

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "position": self.position,
            "day_basis": "UTC date of occurred_at",
            "ledger_events": self.ledger_events,
            "projected_events": self.projected_events,
            "days": self.days,
            "drift": [
                {
                    "district_id": d.district_id,
                    "day": d.day.isoformat(),
                    "ledger": d.ledger,
                    "projections": d.projections,
                    "missing": d.missing,
                }
                for d in self.drift
            ],
        }


def ledger_counts(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    district_id: str | None,
    upto: int,
    on_progress: Callable[[int], None] | None = None,
) -> Counter[Key]:
    """Events per (district, UTC day) read from the stored events themselves."""
    counts: Counter[Key] = Counter()
    pending = 0
    for row in iter_rows(chain_scan(recorder), district_id, upto):
        pending += 1
        if row.stored is not None:  # an event gone from the store is verify's finding
            envelope = envelope_of(mapper, row.stored)
            at = datetime.fromisoformat(envelope["occurred_at"]).astimezone(UTC)
            counts[(envelope["district_id"], at.date())] += 1
        if on_progress is not None and pending == 5000:
            on_progress(pending)
            pending = 0
    if on_progress is not None and pending:
        on_progress(pending)
    return counts


def projected_counts(store: ProjectionStore, district_id: str | None, upto: int) -> Counter[Key]:
    """Distinct positions per (district, UTC day) in `ledger_events`."""
    rows = store.execute(PROJECTED_COUNTS_SQL, {"upto": upto, "district_id": district_id or ""})
    return Counter({(str(d), _as_date(day)): int(n) for d, day, n in rows})


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def reconcile(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    store: ProjectionStore,
    district_id: str | None = None,
    upto: int | None = None,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReconcileReport:
    """Compare both sides up to `upto` (default: the ledger head now)."""
    started = time.perf_counter()
    scan = chain_scan(recorder)
    position = scan.head() if upto is None else upto
    if on_start is not None:
        on_start(scan.count(district_id, position))
    ours = ledger_counts(recorder, mapper, district_id, position, on_progress)
    theirs = projected_counts(store, district_id, position)
    report = ReconcileReport(
        position=position,
        ledger_events=sum(ours.values()),
        projected_events=sum(theirs.values()),
        days=len(set(ours) | set(theirs)),
    )
    for key in sorted(set(ours) | set(theirs)):
        if ours[key] != theirs[key]:
            report.drift.append(Drift(key[0], key[1], ours[key], theirs[key]))
    report.seconds = time.perf_counter() - started
    return report
