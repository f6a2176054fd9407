"""Rebuild the projections from the ledger into a fresh table, then swap it in.

Readers never see a half-built table: rows go into `ledger_events_rebuild` (created
`AS ledger_events`, so it has exactly the live DDL, whatever migrations made it), and
only the finished table is renamed into place. The swap is one `RENAME TABLE a TO
a_old, b TO a` statement (ClickHouse 18.16 has no EXCHANGE TABLES); chdb runs one
statement at a time, so no chdb reader can fall between the two renames.

The swap runs inside a caller-supplied guard: an embedded API holds its projector and
read-your-writes syncs still during it (see `Runtime.swap_projections`). Events appended
while the rebuild ran are copied in just before the swap, and once more after it, so a
projector that kept writing to the old table (Kafka mode) loses nothing either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tutorledger.consumers.projector import decode
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.rows import COLUMNS, event_row

log = logging.getLogger(__name__)

TABLE = "ledger_events"
STAGING = f"{TABLE}_rebuild"
RETIRED = f"{TABLE}_old"
BATCH = 5000

Progress = Callable[[int], None]
SwapGuard = Callable[[Callable[[], int]], int]


@dataclass(frozen=True)
class RebuildReport:
    """How many events went into the new table and the ledger position it covers."""

    events: int
    position: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _run_guarded(swap: Callable[[], int]) -> int:
    return swap()


def copy_ledger(
    ledger: Ledger,
    store: ProjectionStore,
    table: str,
    after: int,
    *,
    batch_size: int = BATCH,
    on_progress: Progress | None = None,
) -> tuple[int, int]:
    """Project every ledger event after `after` into `table`: (events, last position).

    `on_progress` receives position deltas, so a bar whose total is the ledger head ends full
    even where positions have gaps (PostgreSQL sequences skip on rolled-back appends).
    """
    position, count = after, 0
    while notifications := ledger.recorder.select_notifications(
        start=position + 1, limit=batch_size
    ):
        rows = [event_row(n.id, decode(ledger, n)) for n in notifications]
        store.insert(table, COLUMNS, rows)
        last = int(notifications[-1].id)
        if on_progress is not None:
            on_progress(last - position)
        position, count = last, count + len(rows)
    return count, position


def ledger_head(ledger: Ledger) -> int:
    """The highest ledger position now (0 for an empty ledger)."""
    recorder: Any = ledger.recorder
    return int(recorder.max_notification_id() or 0)


def rebuild(
    ledger: Ledger,
    store: ProjectionStore,
    *,
    batch_size: int = BATCH,
    on_progress: Progress | None = None,
    guard: SwapGuard = _run_guarded,
) -> RebuildReport:
    """Rebuild `ledger_events` from the whole ledger and swap it in; the old table is dropped."""
    started = time.perf_counter()
    store.execute(f"DROP TABLE IF EXISTS {STAGING}")  # left over by an interrupted run
    store.execute(f"CREATE TABLE {STAGING} AS {TABLE}")
    count, position = copy_ledger(
        ledger, store, STAGING, 0, batch_size=batch_size, on_progress=on_progress
    )

    def swap() -> int:
        nonlocal count, position
        more, position = copy_ledger(ledger, store, STAGING, position, batch_size=batch_size)
        count += more
        store.execute(f"DROP TABLE IF EXISTS {RETIRED}")
        store.execute(f"RENAME TABLE {TABLE} TO {RETIRED}, {STAGING} TO {TABLE}")
        return position

    position = guard(swap)
    store.execute(f"DROP TABLE IF EXISTS {RETIRED}")
    # A Kafka projector may have written events past `position` into the retired table.
    more, position = copy_ledger(ledger, store, TABLE, position, batch_size=batch_size)
    report = RebuildReport(count + more, position, time.perf_counter() - started)
    log.info(
        "projections rebuilt",
        extra={"events": report.events, "position": report.position, "rate": round(report.rate)},
    )
    return report
