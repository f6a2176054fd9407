"""Rebuild and reconcile on a ledger of more than 100k events, on chdb and ClickHouse 18.16.

The incremental projector and a rebuild from scratch must produce the same table, row for
row; reconcile must then agree, and must name the district-day of a projection row that
went missing (removed portably: 18.16 has no ALTER TABLE ... DELETE).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.consumers.projector import LedgerFollower, decode
from tutorledger.consumers.rebuild import RETIRED, STAGING, ledger_head, rebuild
from tutorledger.consumers.reconcile import reconcile
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

SPECS = (
    DistrictSpec(district_id="big-district", students=8000, schools=20, days=28, seed=5),
    DistrictSpec(district_id="small-district", students=300, schools=3, days=20, seed=11),
)
DUMP = "SELECT * FROM ledger_events FINAL ORDER BY position"


def load(ledger: Ledger, spec: DistrictSpec) -> None:
    district = generate(spec)
    for school in district.schools:
        ledger.put_school(
            spec.district_id, school["school_id"], school["name"], school["enrollment"],
            school["as_of"],
        )  # fmt: skip
    for i in range(0, len(district.events), 1000):
        ledger.record_events(district.events[i : i + 1000])


@pytest.fixture(scope="module")
def big_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    path = tmp_path_factory.mktemp("rebuild")
    ledger = open_ledger(Settings(event_store=f"sqlite:///{path}/ledger.db"))
    for spec in SPECS:
        load(ledger, spec)
    assert ledger_head(ledger) >= 100_000
    yield ledger
    ledger.close()


def tables(store: ProjectionStore) -> set[str]:
    return {str(r[0]) for r in store.execute("SHOW TABLES")}


def drop_one_row(store: ProjectionStore, position: int) -> None:
    """Portable 'delete': copy all rows but one into a twin table and swap it in."""
    store.execute("CREATE TABLE ledger_events_partial AS ledger_events")
    store.execute(
        "INSERT INTO ledger_events_partial SELECT * FROM ledger_events WHERE position != %(p)s",
        {"p": position},
    )
    store.execute(
        "RENAME TABLE ledger_events TO ledger_events_full, ledger_events_partial TO ledger_events"
    )
    store.execute("DROP TABLE ledger_events_full")


def test_rebuild_equals_incremental_projection_and_reconcile_finds_a_missing_row(
    big_ledger: Ledger, projections: ProjectionStore
) -> None:
    head = ledger_head(big_ledger)
    follower = LedgerFollower(big_ledger, projections, batch_size=7919)  # uneven batches
    assert follower.catch_up() == head
    incremental = projections.execute(DUMP)
    assert len(incremental) == head >= 100_000

    advanced: list[int] = []
    report = rebuild(big_ledger, projections, batch_size=10_000, on_progress=advanced.append)
    assert (report.events, report.position) == (head, head)
    assert sum(advanced) == head  # the CLI's bar ends exactly full
    assert projections.execute(DUMP) == incremental
    assert not {STAGING, RETIRED} & tables(projections)

    clean = reconcile(big_ledger.recorder, big_ledger.mapper, projections)
    assert clean.ok and clean.ledger_events == clean.projected_events == head
    assert clean.days > 28

    victim = head // 2
    envelope = decode(big_ledger, big_ledger.recorder.select_notifications(victim, 1)[0])
    day = datetime.fromisoformat(envelope["occurred_at"]).astimezone(UTC).date()
    drop_one_row(projections, victim)
    drifted = reconcile(big_ledger.recorder, big_ledger.mapper, projections)
    assert not drifted.ok
    assert [(d.district_id, d.day, d.missing) for d in drifted.drift] == [
        (envelope["district_id"], day, 1)
    ]
    assert drifted.drift[0].ledger == drifted.drift[0].projections + 1
    # Scoped to the other district there is nothing to report.
    other = next(s.district_id for s in SPECS if s.district_id != envelope["district_id"])
    assert reconcile(big_ledger.recorder, big_ledger.mapper, projections, other).ok


def test_rebuild_takes_in_events_appended_while_it_runs(
    projections: ProjectionStore, tmp_path: Path
) -> None:
    ledger = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/ledger.db"))
    try:
        spec = DistrictSpec(district_id="busy", students=200, schools=2, days=5, seed=3)
        load(ledger, spec)
        LedgerFollower(ledger, projections).catch_up()
        late = DistrictSpec(district_id="late", students=20, schools=1, days=2, seed=4)
        swaps: list[int] = []

        def on_progress(_: int) -> None:
            if ledger_head(ledger) < 10_000 and not swaps:
                swaps.append(0)
                load(ledger, late)  # an emitter keeps writing during the rebuild

        def guard(swap: Any) -> int:
            position: int = swap()
            swaps.append(position)
            return position

        report = rebuild(ledger, projections, batch_size=500, on_progress=on_progress, guard=guard)
        head = ledger_head(ledger)
        assert swaps[-1] == report.position == head
        rows = projections.execute("SELECT count(), max(position) FROM ledger_events FINAL")
        assert tuple(int(v) for v in rows[0]) == (head, head)
        assert reconcile(ledger.recorder, ledger.mapper, projections).ok
    finally:
        ledger.close()
