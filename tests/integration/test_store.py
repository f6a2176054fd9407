"""The ledger on both real stores: SQLite file and PostgreSQL 15 (one suite, two backends)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from builders import envelope, recompute_chain

from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.store import chain_hash, open_ledger
from tutorledger.infra.settings import Settings


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    app = open_ledger(Settings(event_store=store_url))
    yield app
    app.close()


def _event(session: str, kind: str, at: str, payload: dict[str, Any]) -> dict[str, Any]:
    return envelope("d-int", session, kind, at, payload)


def test_district_round_trip_is_idempotent_across_reopen(store_url: str) -> None:
    district = generate(DistrictSpec(district_id="d-int", students=120, schools=3, days=5))
    first = open_ledger(Settings(event_store=store_url))
    try:
        outcomes = [o for i in range(0, len(district.events), 400)
                    for o in first.record_events(district.events[i : i + 400])]  # fmt: skip
        head = first.recorder.max_notification_id()
    finally:
        first.close()
    statuses = Counter(o.status for o in outcomes)
    unique = len({e["event_id"] for e in district.events})
    assert statuses["rejected"] == 0
    assert statuses["accepted"] == unique
    assert head == max(o.position or 0 for o in outcomes)
    assert statuses["duplicate"] == len(district.events) - unique

    again = open_ledger(Settings(event_store=store_url))
    try:
        replay = again.record_events(district.events[:1000])
        assert {o.status for o in replay} == {"duplicate"}
        positions = {o.event_id: o.position for o in outcomes if o.status == "accepted"}
        assert all(o.position == positions[o.event_id] for o in replay)
        assert again.recorder.max_notification_id() == head
    finally:
        again.close()


def test_chain_recomputes_from_stored_events(ledger: Ledger) -> None:
    district = generate(DistrictSpec(district_id="d-int", students=60, schools=2, days=3))
    ledger.record_events(district.events)
    rows = ledger.recorder.chained_events(None, 0, 100_000)  # type: ignore[attr-defined]
    _, head = recompute_chain(ledger.mapper, rows, chain_hash, "d-int")
    assert ledger.recorder.head("d-int") == (rows[-1][0], head)  # type: ignore[attr-defined]


def test_concurrent_writers_never_fork_a_session(store_url: str) -> None:
    """Two ledger instances (as two API processes) race on the same sessions."""
    apps = [open_ledger(Settings(event_store=store_url)) for _ in range(2)]
    sessions = [f"race-{i}" for i in range(30)]
    requested = [
        _event(s, "requested", "2026-03-02T15:00:00Z",
               {"school_id": "s1", "student_id": f"st-{s}", "grade": 4, "subject": "math"})
        for s in sessions
    ]  # fmt: skip
    # Each writer sends its own `matched` (different event ids) for every session.
    matched = [
        [_event(s, "matched", "2026-03-02T15:01:00Z", {"tutor_id": f"t{w}"}) for s in sessions]
        for w in range(2)
    ]
    results: list[list[Any]] = [[], []]

    def write(w: int) -> None:
        for i in range(len(sessions)):
            results[w] += apps[w].record_events([requested[i], matched[w][i]])

    try:
        threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        by_id: dict[str, Counter[str]] = {}
        for outcome in results[0] + results[1]:
            by_id.setdefault(outcome.event_id, Counter())[outcome.status] += 1
        for event in requested:
            assert by_id[event["event_id"]]["accepted"] == 1
        for s_index, _ in enumerate(sessions):
            winners = [w for w in range(2) if by_id[matched[w][s_index]["event_id"]]["accepted"]]
            assert len(winners) == 1, "exactly one matched per session"
        # Count rows, not the head: PostgreSQL sequences skip ids of rolled-back appends.
        stored = apps[0].recorder.chained_events(None, 0, 10_000)  # type: ignore[attr-defined]
        assert len(stored) == 2 * len(sessions)
        recompute_chain(apps[0].mapper, stored, chain_hash)  # the chain survived the race intact
        for s in sessions:
            session = apps[1].get_session("d-int", s)
            assert session is not None and session.status == "matched"
    finally:
        for app in apps:
            app.close()
