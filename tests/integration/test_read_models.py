"""Read models on chdb and ClickHouse 18.16: equal to the fold of the raw events at any ledger
position, whatever the arrival order, however often a range is redelivered, across rebuilds;
and a reader never sees a figure that is neither the old generation's nor the new one's."""

from __future__ import annotations

import random
import threading
import zlib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import reference_insight as insight
import reference_metrics as ref
from metric_events import TZ, district
from reference import participation as ref_participation

from tutorledger.bench.metrics_latency import ledger_rows
from tutorledger.consumers.projector import LedgerFollower, decode
from tutorledger.consumers.rebuild import rebuild
from tutorledger.domain.alert_rules import AlertRules
from tutorledger.domain.district import SchoolHours
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings
from tutorledger.projections.alerts_students import length_percentile_us, long_session
from tutorledger.projections.demand import demand
from tutorledger.projections.dosage import dosage, lengths_sql
from tutorledger.projections.engagement import engagement
from tutorledger.projections.filters import Filters
from tutorledger.projections.participation import participation
from tutorledger.projections.read_models import (
    FACT_COLUMNS,
    Tables,
    current_generation,
    current_tables,
)
from tutorledger.projections.satisfaction import satisfaction
from tutorledger.projections.schema import migrate
from tutorledger.projections.timing import timing
from tutorledger.projections.wait_times import wait_times
from tutorledger.projections.writer import ReadModelWriter, RequestCache

D = "rm-d"
HOURS = SchoolHours(days=(1, 2, 3, 4, 5), start="08:00", end="15:30")
FILTERS: list[dict[str, Any]] = [
    {},
    {"school_id": "sch-02", "subject": "geometry"},
    {"grade": 9, "date_from": date(2026, 9, 20)},
]


@pytest.fixture
def store(projections: ProjectionStore) -> ProjectionStore:
    """Both ClickHouse engines (the conftest's `projections`), under this file's name."""
    return projections


def figures(store: ProjectionStore, position: int, f: dict[str, Any]) -> dict[str, Any]:
    filters = Filters(D, position, TZ, **f)
    return {
        "participation": participation(store, filters),
        "demand": demand(store, filters, ("school_id", "subject")),
        "wait_times": wait_times(store, filters, ("school_id",)),
        "satisfaction": satisfaction(store, filters, ()),
        "timing": timing(store, filters, HOURS),
        "engagement": engagement(store, filters),
        "dosage": dosage(store, filters, 45),
    }


def folded(events: list[dict[str, Any]], f: dict[str, Any]) -> dict[str, Any]:
    """The reference: the raw events folded in plain Python."""
    return {
        "participation": ref_participation(events, [], D, TZ, **f),
        "demand": ref.demand(events, D, TZ, ("school", "subject"), **f),
        "wait_times": ref.wait_times(events, D, TZ, ("school",), **f),
        "satisfaction": ref.satisfaction(events, D, TZ, (), **f),
        "timing": ref.timing(events, D, TZ, **f),
        "engagement": ref.engagement(events, D, TZ, **f),
        "dosage": insight.dosage(events, D, TZ, target=45, **f),
    }


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 12)
    return value


def assert_exact(store: ProjectionStore, events: list[dict[str, Any]], rng: random.Random) -> None:
    """At the head and at random positions P, every figure equals the fold of events <= P."""
    head = len(events)
    for position in [head, *rng.sample(range(1, head), 4)]:
        for f in FILTERS:
            got = plain(figures(store, position, f))
            assert got == plain(folded(events[:position], f)), (position, f)


def test_figures_equal_the_fold_after_interleaved_arrival_and_redelivery(
    store: ProjectionStore,
) -> None:
    rows = list(ledger_rows(district(D, students=300).events))
    unique = [dict(_envelope(r)) for r in rows]
    rng = random.Random(11)
    # Kafka-like arrival: each session stays in order within its partition, partitions
    # interleave in random chunks, and a partition sometimes redelivers what it sent before.
    partitions: list[list[tuple[Any, ...]]] = [[], [], []]
    for row in rows:
        partitions[zlib.crc32(row[4].encode()) % 3].append(row)
    writer = ReadModelWriter(store, RequestCache(size=50))  # tiny: steps look requests up
    offsets = [0, 0, 0]
    while live := [k for k in range(3) if offsets[k] < len(partitions[k])]:
        k = rng.choice(live)
        end = offsets[k] + rng.randint(1, 400)
        writer.write(partitions[k][offsets[k] : end])
        if rng.random() < 0.3:
            writer.write(partitions[k][max(0, offsets[k] - rng.randint(1, 600)) : end])
        offsets[k] = end
    assert_exact(store, unique, rng)
    for _ in range(30):  # random ranges re-inserted many times, by fresh writers too
        start = rng.randrange(len(rows))
        again = ReadModelWriter(store) if rng.random() < 0.5 else writer
        again.write(rows[start : start + rng.randint(1, 3000)])
    assert_exact(store, unique, rng)


def test_a_batch_waiting_on_more_requests_than_the_cache_holds(store: ProjectionStore) -> None:
    """Steps whose requests were projected earlier are looked up in the read model; a batch
    with more such sessions than the cache holds must keep what it fetched for itself."""
    rows = list(ledger_rows(district(D, students=120).events))
    requested = [r for r in rows if _envelope(r)["type"] == "session.requested"]
    steps = [r for r in rows if _envelope(r)["type"] != "session.requested"]
    ReadModelWriter(store).write(requested)
    ReadModelWriter(store, RequestCache(size=10)).write(steps)  # a fresh projector's batch
    assert len({r[4] for r in steps}) > 10
    assert_exact(store, [dict(_envelope(r)) for r in rows], random.Random(5))


def test_batches_naming_more_than_one_query_can_list(store: ProjectionStore) -> None:
    """A projector's batch may name more positions (the redelivery check) or sessions (the
    request lookup) than one query's text can hold: both engines refuse a query over
    max_query_size (256 KiB). Each list goes in parts; nothing is lost or counted twice."""
    long_id = "-" + "x" * 100  # session ids may be 128 characters long
    events = district(D, students=4000).events
    rows = [(*r[:4], r[4] + long_id, *r[5:]) for r in ledger_rows(events)]
    requested = [r for r in rows if r[2] == "session.requested"]
    steps = [r for r in rows if r[2] != "session.requested"]
    ReadModelWriter(store).write(requested)
    ReadModelWriter(store, RequestCache(size=10)).write(steps)  # a cold projector looks up
    ReadModelWriter(store).write(rows)  # the whole batch redelivered: every position present
    sessions = [r for r in rows if r[2].startswith("session.")]
    assert len(rows) > 45_000 and len({r[4] for r in steps}) > 10_000
    facts = current_tables(store).facts
    assert store.execute(f"SELECT count(), uniqExact(position) FROM {facts}")[0] == (
        len(sessions), len(sessions),
    )  # fmt: skip
    unique = [dict(_envelope(r)) for r in rows]
    assert plain(figures(store, len(rows), {})) == plain(folded(unique, {}))


def test_completions_projected_before_matched_us_existed_give_the_same_lengths(
    store: ProjectionStore,
) -> None:
    """An older release wrote completions without their wait to the match (-1 in
    `matched_us`): dosage and the long-session alert then group the matched and completed
    facts by session, and answer exactly what the one-row lengths answer."""
    rows = list(ledger_rows(district(D, students=150).events))
    ReadModelWriter(store).write(rows)
    live = current_tables(store)
    legacy = Tables(7)  # the same facts as that release left them, read by pinning it
    store.execute(f"CREATE TABLE {legacy.facts} AS {live.facts}")
    old = [("if(step = 2, -1, matched_us)" if c == "matched_us" else c) for c in FACT_COLUMNS]
    store.execute(
        f"INSERT INTO {legacy.facts} ({', '.join(FACT_COLUMNS)}) "
        f"SELECT {', '.join(old)} FROM {live.facts}"
    )
    head, events = len(rows), [dict(_envelope(r)) for r in rows]
    at = max(date.fromisoformat(e["occurred_at"][:10]) for e in events)
    for position in (head, head // 2):
        new, pinned = Filters(D, position, TZ), Filters(D, position, TZ, generation=7)
        assert "GROUP BY" not in lengths_sql(store, new)
        assert "GROUP BY" in lengths_sql(store, pinned)
        expected = plain(insight.dosage(events[:position], D, TZ, target=45))
        assert plain(dosage(store, new, 45)) == plain(dosage(store, pinned, 45)) == expected
        assert length_percentile_us(store, new, 90) == length_percentile_us(store, pinned, 90)
        rules = AlertRules(long_session_percentile=90)
        assert long_session(store, new, at, rules) == long_session(store, pinned, at, rules)


def _envelope(row: tuple[Any, ...]) -> dict[str, Any]:
    """Back from a ledger_events row to the canonical envelope the reference folds."""
    at = row[6].replace(microsecond=row[7])
    payload: dict[str, Any] = {}
    kind = row[2]
    if kind == "session.requested":
        payload = {"school_id": row[5], "student_id": row[8], "grade": row[9], "subject": row[10]}
    elif kind == "session.surveyed":
        payload = {"helped": bool(row[15]), "rating": row[16]}
    return {
        "district_id": row[3],
        "session_id": row[4],
        "type": kind,
        "occurred_at": at.isoformat(),
        "payload": payload,
    }


def _ledger_events(ledger: Ledger) -> list[dict[str, Any]]:
    return [decode(ledger, n) for n in ledger.recorder.select_notifications(1, 10**9)]


def test_figures_equal_the_fold_across_projection_redelivery_and_rebuilds(
    store: ProjectionStore, tmp_path: Path
) -> None:
    ledger = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/ledger.db"))
    rng = random.Random(5)
    try:
        events = district(D, students=300).events
        half = len(events) // 2
        ledger.record_events(events[:half])
        follower = LedgerFollower(ledger, store, batch_size=997)
        follower.catch_up()
        rebuild(ledger, store, batch_size=1500)
        ledger.record_events(events[half:])
        follower = LedgerFollower(ledger, store, batch_size=613)  # resumes where it was
        follower.catch_up()
        stored = _ledger_events(ledger)
        for _ in range(10):  # the embedded projector replaying blocks
            start = rng.randrange(1, len(stored))
            follower.position = start
            follower.step()
        follower.catch_up()
        assert_exact(store, stored, rng)
        rebuild(ledger, store, batch_size=2000)
        assert current_generation(store) == 3
        assert_exact(store, stored, rng)
    finally:
        ledger.close()


def test_reader_during_rebuild_on_server_sees_old_or_new_figures(
    clickhouse_url: str, tmp_path: Path
) -> None:
    settings = Settings(event_store=f"sqlite:///{tmp_path}/ledger.db", clickhouse=clickhouse_url)
    ledger = open_ledger(settings)
    store = open_projection_store(settings)
    migrate(store)
    try:
        generated = district(D, students=300)
        ledger.put_school(D, "sch-01", "School 1", {"3": 40, "9": 60}, date(2026, 8, 1))
        ledger.record_events(generated.events[: len(generated.events) // 3])
        LedgerFollower(ledger, store).catch_up()
        # More events and a new enrolment land in the ledger but are not projected: each
        # rebuild changes both read models at once (sessions and enrolment).
        ledger.put_school(D, "sch-01", "School 1", {"3": 45, "9": 70}, date(2026, 8, 2))
        ledger.record_events(generated.events[len(generated.events) // 3 :])
        everything = Filters(D, 10**12, TZ)
        old = participation(store, everything)
        seen: list[dict[str, Any]] = []
        stop = threading.Event()

        def read() -> None:
            reader = open_projection_store(settings)  # its own connection
            try:
                while not stop.is_set():
                    seen.append(participation(reader, everything))
            finally:
                reader.close()

        thread = threading.Thread(target=read)
        thread.start()
        try:
            for _ in range(2):
                rebuild(ledger, store, batch_size=300)
        finally:
            stop.set()
            thread.join()
        new = participation(store, everything)
        assert new != old and new["enrolled"] == 115 and old["enrolled"] == 100
        assert len(seen) > 10
        assert all(figure in (old, new) for figure in seen)
        assert new in seen or seen[-1] == old  # the reader did run across the switch
    finally:
        store.close()
        ledger.close()
