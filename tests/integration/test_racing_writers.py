"""Two writers handed the same records at the same moment count each position once.

A writer checks which positions the read models hold and inserts the rest; the check and the
insert are not one step. Two writers that both check before either inserts (a projector that
lost its partitions in a rebalance while still inserting its batch, and the member that took
them over; `repair` run exactly as a late redelivery arrives) both insert the same positions.
Here a barrier makes that happen every time: each writer's first insert of session facts
waits until the other one has finished its check. Merges of the facts table are stopped, as
on a busy server where the copies' parts have not been merged yet. Every figure must still
equal the fold of the raw events, at the head and at earlier positions, on chdb and
ClickHouse 18.16.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import pytest
from metric_events import district
from test_read_models import D, _envelope, assert_exact

from tutorledger.bench.metrics_latency import ledger_rows
from tutorledger.infra.clickhouse import Encoded, ProjectionStore
from tutorledger.projections.read_models import current_tables
from tutorledger.projections.writer import ReadModelWriter, RequestCache

Row = tuple[Any, ...]


@pytest.fixture
def unmerged(projections: ProjectionStore) -> Iterator[ProjectionStore]:
    """The projections with the session facts' merges stopped: copies stay in their parts."""
    facts = current_tables(projections).facts
    projections.execute(f"SYSTEM STOP MERGES {facts}")
    yield projections
    projections.execute(f"SYSTEM START MERGES {facts}")


class Racing:
    """A projection store whose session-facts inserts wait at a barrier: both writers have
    checked what is present before either of them inserts."""

    def __init__(self, store: ProjectionStore, barrier: threading.Barrier) -> None:
        self.store = store
        self.kind = store.kind
        self.barrier = barrier
        self.facts = current_tables(store).facts

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self.store.execute(sql, params)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.send(self.encode(table, columns, rows))

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Encoded:
        return self.store.encode(table, columns, rows)

    def send(self, block: Encoded) -> None:
        if block.table == self.facts:
            self.barrier.wait(timeout=120)
        self.store.send(block)

    def close(self) -> None:
        """The wrapped store belongs to the fixture."""


def race(*writers: Callable[[], None]) -> None:
    """Run the writers on threads of their own at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def run(write: Callable[[], None]) -> None:
        try:
            write()
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_a_rebalanced_batch_and_its_late_redelivery_count_once(unmerged: ProjectionStore) -> None:
    """The member that lost the partitions and the one that took them over write the same
    batches at the same moment, over and over; the figures equal the fold."""
    rows = list(ledger_rows(district(D, students=200).events))
    events = [dict(_envelope(r)) for r in rows]
    rng = random.Random(27)
    start = 0
    while start < len(rows):
        batch = rows[start : start + rng.randint(200, 1500)]
        barrier = threading.Barrier(2)
        old, new = (ReadModelWriter(Racing(unmerged, barrier)) for _ in range(2))
        race(partial(old.write, batch), partial(new.write, batch))
        start += len(batch)
    facts = current_tables(unmerged).facts
    total, distinct = unmerged.execute(f"SELECT count(), uniqExact(position) FROM {facts}")[0]
    assert total > distinct  # the race happened: copies are stored (until a merge)
    assert_exact(unmerged, events, rng)


def test_a_repair_racing_a_redelivery_counts_once(unmerged: ProjectionStore) -> None:
    """`repair` fills lost steps through the same writer while the broker redelivers them
    (with what surrounds them) to a projector with a cold cache."""
    rows = list(ledger_rows(district(D, students=200).events))
    events = [dict(_envelope(r)) for r in rows]
    rng = random.Random(2027)
    lost = {r[0] for r in rng.sample([r for r in rows if r[2] != "session.requested"], 300)}
    ReadModelWriter(unmerged).write([r for r in rows if r[0] not in lost])
    barrier = threading.Barrier(2)
    repairer = ReadModelWriter(Racing(unmerged, barrier))
    projector = ReadModelWriter(Racing(unmerged, barrier), RequestCache(size=10))
    race(
        lambda: repairer.write([r for r in rows if r[0] in lost]),
        lambda: projector.write(rows[min(lost) - 1 :]),
    )
    assert_exact(unmerged, events, rng)
