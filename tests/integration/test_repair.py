"""Holes below the watermark: a broker that acknowledged records and lost them.

The fault harness caught tansu (S3 storage) doing this after a SIGKILL: the producer's
sequence was saved, the record batch was not, and the retry was answered
DUPLICATE_SEQUENCE_NUMBER, which Kafka clients take as success. Later watermarks arrive,
so `/readyz` says caught up while figures miss events. Here the same state is made by hand
(every event projected but a few, watermarks at the head) on both event stores and both
ClickHouse engines: `repair` must name exactly those positions and fill them, after which
the projections equal a complete projection row for row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tutorledger.api.cli.main import app
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.consumers.kafka_projector import WATERMARK_COLUMNS, stream_position
from tutorledger.consumers.projector import decode
from tutorledger.consumers.repair import find_gaps, repair, runs
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings
from tutorledger.projections.read_models import current_tables
from tutorledger.projections.rows import COLUMNS, event_row
from tutorledger.projections.schema import migrate
from tutorledger.projections.writer import MissingRequest, ReadModelWriter

DUMP = "SELECT * FROM ledger_events FINAL ORDER BY position"


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    ledger = open_ledger(Settings(event_store=store_url))
    district = generate(DistrictSpec(district_id="holes", students=150, schools=2, days=6))
    for i in range(0, len(district.events), 500):
        ledger.record_events(district.events[i : i + 500])
    yield ledger
    ledger.close()


def project_all_but(ledger: Ledger, store: ProjectionStore, lost: set[int]) -> int:
    """What the projector holds after the broker lost `lost`: the rest, watermarks at head."""
    head = int(ledger.recorder.max_notification_id() or 0)
    notes = ledger.recorder.select_notifications(start=1, limit=head)
    rows = [event_row(n.id, decode(ledger, n)) for n in notes if n.id not in lost]
    ReadModelWriter(store).write(rows)  # what the projectors write: read models and raw rows
    now = datetime(2026, 1, 1)
    marks = [(p, 3, head, now) for p in range(3)]
    store.insert("stream_watermarks", WATERMARK_COLUMNS, marks)
    return head


def test_repair_names_the_lost_positions_and_fills_them(
    ledger: Ledger, projections: ProjectionStore
) -> None:
    head = int(ledger.recorder.max_notification_id() or 0)
    assert head > 1000
    # Steps, not requests: a projector given a step whose request is missing stops and
    # waits for it (then `repair --upto` the ledger head, past the claimed position).
    steps = [n.id for n in ledger.recorder.select_notifications(start=1, limit=head)
             if decode(ledger, n)["type"] != "session.requested"]  # fmt: skip
    lost = {*steps[:2], steps[len(steps) // 3], *steps[len(steps) // 2 : len(steps) // 2 + 7],
            steps[-1]}  # fmt: skip
    project_all_but(ledger, projections, lost)
    assert stream_position(projections) == head  # the watermarks claim complete

    found = find_gaps(ledger.recorder, projections, head, width=256)  # several windows
    assert found.missing == sorted(lost) and not found.unexpected and not found.ok
    early = find_gaps(ledger.recorder, projections, head // 2 - 1).missing
    assert early == sorted(p for p in lost if p <= head // 2 - 1) and len(early) >= 3

    report = repair(ledger, projections, head)
    assert report.repaired == len(lost) and report.missing == sorted(lost)
    assert find_gaps(ledger.recorder, projections, head).ok
    rows = projections.execute(DUMP)
    complete = [event_row(n.id, decode(ledger, n)) for n in
                ledger.recorder.select_notifications(start=1, limit=head)]  # fmt: skip
    assert [r[0] for r in rows] == list(range(1, head + 1))
    assert len(rows) == len(complete)
    # A second repair finds nothing: filling in is idempotent.
    assert repair(ledger, projections, head).repaired == 0


def test_a_projected_position_the_ledger_lacks_is_reported(
    ledger: Ledger, projections: ProjectionStore
) -> None:
    head = project_all_but(ledger, projections, set())
    stray = event_row(head + 5, decode(ledger, ledger.recorder.select_notifications(1, 1)[0]))
    projections.insert("ledger_events", COLUMNS, [stray])
    report = find_gaps(ledger.recorder, projections, head + 10)
    assert report.unexpected == [head + 5] and report.missing == []


def test_runs_groups_consecutive_positions() -> None:
    assert list(runs([1, 2, 3, 7, 9, 10])) == [(1, 3), (7, 7), (9, 10)]
    assert list(runs([])) == []


def test_repair_command_dry_run_then_fill(
    store_url: str, clickhouse_url: str, tmp_path: Path
) -> None:
    settings = Settings(event_store=store_url, clickhouse=clickhouse_url)
    ledger = open_ledger(settings)
    store = open_projection_store(settings)
    try:
        district = generate(DistrictSpec(district_id="cli", students=40, schools=1, days=3))
        ledger.record_events(district.events)
        migrate(store)
        # Two steps, not requests (a step whose request is lost stalls the writer). Positions
        # follow the order events were accepted in, so pick them by type, not by number.
        notes = ledger.recorder.select_notifications(start=1, limit=100)
        steps = [n.id for n in notes if decode(ledger, n)["type"] != "session.requested"]
        head = project_all_but(ledger, store, set(steps[:2]))
    finally:
        store.close()
        ledger.close()
    env = {
        "TUTORLEDGER_EVENT_STORE": store_url,
        "TUTORLEDGER_CLICKHOUSE": clickhouse_url,
        "TUTORLEDGER_STREAM": "kafka://127.0.0.1:9",
        "TUTORLEDGER_VAR_DIR": str(tmp_path),
    }
    runner = CliRunner()
    checked = runner.invoke(app, ["repair", "--dry-run"], env=env)
    assert checked.exit_code == 1, checked.output
    assert '"missing": 2' in checked.stdout and f'"checked_upto": {head}' in checked.stdout
    filled = runner.invoke(app, ["repair"], env=env)
    assert filled.exit_code == 0 and '"repaired": 2' in filled.stdout, filled.output
    again = runner.invoke(app, ["repair", "--dry-run"], env=env)
    assert again.exit_code == 0 and '"ok": true' in again.stdout, again.output


def test_raw_rows_without_their_read_model_rows_are_found_and_filled(
    ledger: Ledger, projections: ProjectionStore
) -> None:
    """The metrics read the read models: a raw row whose fact is absent is a hole too."""
    head = int(ledger.recorder.max_notification_id() or 0)
    notes = ledger.recorder.select_notifications(start=1, limit=head)
    steps = [n for n in notes if decode(ledger, n)["type"] != "session.requested"]
    lost = {steps[0].id, steps[len(steps) // 2].id}
    project_all_but(ledger, projections, lost)
    raw = [event_row(n.id, decode(ledger, n)) for n in notes if n.id in lost]
    projections.insert("ledger_events", COLUMNS, raw)
    found = find_gaps(ledger.recorder, projections, head)
    assert found.missing == [] and found.read_model_missing == sorted(lost)
    assert repair(ledger, projections, head).repaired == len(lost)
    assert find_gaps(ledger.recorder, projections, head).ok


def test_a_projector_stalled_on_a_lost_request_goes_on_after_repair_upto(
    ledger: Ledger, projections: ProjectionStore
) -> None:
    """The broker lost a request; its later steps arrive. The writer refuses them (it cannot
    place a step without its request), so the projector retries the batch and the claimed
    position stops. `repair --upto` the ledger head fills the request from the ledger, and
    the very same retried batch then goes through: nothing lost, nothing written twice."""
    head = int(ledger.recorder.max_notification_id() or 0)
    notes = ledger.recorder.select_notifications(start=1, limit=head)
    rows = [event_row(n.id, decode(ledger, n)) for n in notes]
    types = [decode(ledger, n)["type"] for n in notes]
    cut = next(i for i in range(len(rows) // 2, len(rows)) if types[i] == "session.requested")
    session = rows[cut][COLUMNS.index("session_id")]
    later = [i for i in range(cut + 1, len(rows))
             if rows[i][COLUMNS.index("session_id")] == session]  # fmt: skip
    assert later, "the generated district has a step after this request"
    writer = ReadModelWriter(projections)
    writer.write(rows[:cut])  # everything before the lost request
    retried = rows[cut + 1 :]  # the batch the projector receives, request missing
    with pytest.raises(MissingRequest):
        writer.write(retried)
    report = repair(ledger, projections, head)  # what `repair --upto <head>` runs
    assert rows[cut][0] in report.missing and report.repaired >= 1
    ReadModelWriter(projections).write(retried)  # the projector's next retry
    assert find_gaps(ledger.recorder, projections, head).ok
    assert [r[0] for r in projections.execute(DUMP)] == list(range(1, head + 1))
    facts = current_tables(projections).facts  # read without FINAL: each position once
    total, distinct = projections.execute(f"SELECT count(), uniqExact(position) FROM {facts}")[0]
    assert total == distinct > 0
