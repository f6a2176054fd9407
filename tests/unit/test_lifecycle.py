"""Lifecycle rules (docs/contract.md §1), via `check_step` and `Ledger.record_events` on SQLite."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tutorledger.domain.envelope import EventType
from tutorledger.domain.ledger import Ledger, Outcome
from tutorledger.domain.session import check_step
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

R, M, C, S, X = (
    EventType.REQUESTED,
    EventType.MATCHED,
    EventType.COMPLETED,
    EventType.SURVEYED,
    EventType.CANCELLED,
)
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DISTRICT = "d-life"

PAYLOADS: dict[EventType, dict[str, Any]] = {
    R: {"school_id": "s1", "student_id": "stu-1", "grade": 5, "subject": "math"},
    M: {"tutor_id": "tutor-1"},
    C: {"outcome": "resolved"},
    S: {"helped": True, "rating": 5},
    X: {"reason": "student_left"},
}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(step: EventType, minutes: int = 0, session: str = "s-1", **payload: Any) -> dict[str, Any]:
    """A valid raw envelope with a fresh event id."""
    return {
        "event_id": str(uuid.uuid4()),
        "type": step.value,
        "schema_version": 1,
        "district_id": DISTRICT,
        "session_id": session,
        "occurred_at": at(minutes).isoformat().replace("+00:00", "Z"),
        "payload": {**PAYLOADS[step], **payload},
    }


def code(outcome: Outcome) -> str | None:
    return outcome.error.code if outcome.error is not None else None


def summary(outcomes: list[Outcome]) -> list[tuple[str, str | None]]:
    return [(o.status, code(o)) for o in outcomes]


def ledger_at(path: Path) -> Ledger:
    return open_ledger(Settings(event_store=f"sqlite:///{path}/l.db"))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    app = ledger_at(tmp_path)
    yield app
    app.close()


def stored_count(ledger: Ledger) -> int:
    return ledger.recorder.max_notification_id() or 0


# --- check_step: the pure rule --------------------------------------------------------------

ACCEPTED = None
CHECK_CASES: list[tuple[list[EventType] | None, EventType, str | None]] = [
    # (steps recorded in order, one minute apart; None = no session), next step, expected code
    (None, R, ACCEPTED),
    (None, M, "unknown_session"),
    (None, C, "unknown_session"),
    (None, S, "unknown_session"),
    (None, X, "unknown_session"),
    ([R], M, ACCEPTED),
    ([R, M], C, ACCEPTED),
    ([R, M, C], S, ACCEPTED),
    ([R], X, ACCEPTED),
    ([R, M], X, ACCEPTED),
    # each step at most once
    ([R], R, "already_recorded"),
    ([R, M], M, "already_recorded"),
    ([R, M, C], C, "already_recorded"),
    ([R, M, C, S], S, "already_recorded"),
    ([R, X], X, "already_recorded"),
    ([R, X], R, "already_recorded"),
    # out of order
    ([R], C, "invalid_transition"),
    ([R], S, "invalid_transition"),
    ([R, M], S, "invalid_transition"),
    ([R, M, C], X, "invalid_transition"),
    ([R, M, C, S], X, "invalid_transition"),
    # nothing after cancelled
    ([R, X], M, "invalid_transition"),
    ([R, X], C, "invalid_transition"),
    ([R, X], S, "invalid_transition"),
    ([R, M, X], C, "invalid_transition"),
    ([R, M, X], S, "invalid_transition"),
]


def steps_of(
    recorded: list[EventType] | None, spacing: int = 1
) -> dict[EventType, datetime] | None:
    if recorded is None:
        return None
    return {step: at(i * spacing) for i, step in enumerate(recorded)}


@pytest.mark.parametrize(("recorded", "step", "expected"), CHECK_CASES)
def test_check_step(
    recorded: list[EventType] | None, step: EventType, expected: str | None
) -> None:
    steps = steps_of(recorded)
    problem = check_step(steps, step, at(100))
    assert (problem.code if problem else None) == expected


@pytest.mark.parametrize(("recorded", "step", "expected"), CHECK_CASES)
def test_check_step_with_equal_timestamps(
    recorded: list[EventType] | None, step: EventType, expected: str | None
) -> None:
    """All steps at the same instant: the order they were recorded in still decides."""
    assert (getattr(check_step(steps_of(recorded, 0), step, at(0)), "code", None)) == expected


@pytest.mark.parametrize(
    ("recorded", "step"), [([R], M), ([R, M], C), ([R, M, C], S), ([R], X), ([R, M], X)]
)
def test_check_step_timestamp_regression(recorded: list[EventType], step: EventType) -> None:
    steps = steps_of(recorded, 10)
    assert steps is not None
    last = max(steps.values())
    problem = check_step(steps, step, last - timedelta(microseconds=1))
    assert problem is not None and problem.code == "timestamp_regression"
    assert check_step(steps, step, last) is None  # equal is allowed
    assert check_step(steps, step, last + timedelta(days=3)) is None


def test_check_step_does_not_modify_steps() -> None:
    steps = steps_of([R, M])
    assert steps is not None
    before = dict(steps)
    check_step(steps, C, at(-5))
    check_step(steps, C, at(50))
    assert steps == before


# --- the ledger: happy path -----------------------------------------------------------------


def test_full_lifecycle_is_accepted(ledger: Ledger) -> None:
    events = [ev(R, 0), ev(M, 3), ev(C, 30), ev(S, 31)]
    outcomes = ledger.record_events(events)
    assert summary(outcomes) == [("accepted", None)] * 4
    assert [o.event_id for o in outcomes] == [e["event_id"] for e in events]
    positions = [o.position for o in outcomes]
    assert positions == sorted(positions) and len(set(positions)) == 4
    session = ledger.get_session(DISTRICT, "s-1")
    assert session is not None
    assert session.status == "surveyed"
    assert session.steps == {R: at(0), M: at(3), C: at(30), S: at(31)}
    assert (session.school_id, session.grade, session.subject) == ("s1", 5, "math")
    assert session.payloads[S] == {"helped": True, "rating": 5}
    assert stored_count(ledger) == 4


def test_full_lifecycle_one_event_per_call(ledger: Ledger) -> None:
    for i, step in enumerate([R, M, C, S]):
        assert summary(ledger.record_events([ev(step, i)])) == [("accepted", None)]
    session = ledger.get_session(DISTRICT, "s-1")
    assert session is not None and session.status == "surveyed"


@pytest.mark.parametrize("prefix", [[R], [R, M]])
def test_cancel_is_allowed_before_completed(ledger: Ledger, prefix: list[EventType]) -> None:
    ledger.record_events([ev(step, i) for i, step in enumerate(prefix)])
    assert summary(ledger.record_events([ev(X, 10)])) == [("accepted", None)]
    session = ledger.get_session(DISTRICT, "s-1")
    assert session is not None and session.status == "cancelled"


def test_equal_timestamps_are_allowed(ledger: Ledger) -> None:
    outcomes = ledger.record_events([ev(R, 0), ev(M, 0), ev(C, 0), ev(S, 0)])
    assert summary(outcomes) == [("accepted", None)] * 4
    session = ledger.get_session(DISTRICT, "s-1")
    assert session is not None and session.status == "surveyed"


def test_equal_timestamps_cancel_then_nothing(ledger: Ledger) -> None:
    outcomes = ledger.record_events([ev(R, 0), ev(X, 0), ev(M, 0)])
    assert summary(outcomes) == [
        ("accepted", None),
        ("accepted", None),
        ("rejected", "invalid_transition"),
    ]
    session = ledger.get_session(DISTRICT, "s-1")
    assert session is not None and session.status == "cancelled"


def test_sessions_are_independent(ledger: Ledger) -> None:
    outcomes = ledger.record_events([ev(R, 5, "a"), ev(R, 0, "b"), ev(M, 1, "b"), ev(M, 6, "a")])
    assert summary(outcomes) == [("accepted", None)] * 4


def test_same_session_id_in_another_district_is_another_session(ledger: Ledger) -> None:
    ledger.record_events([ev(R, 0)])
    other = ev(M, 1)
    other["district_id"] = "d-other"
    assert summary(ledger.record_events([other])) == [("rejected", "unknown_session")]


# --- the ledger: rejections change nothing ---------------------------------------------------

REJECTIONS: list[tuple[str, list[tuple[EventType, int]], tuple[EventType, int], str]] = [
    ("matched before requested", [], (M, 1), "unknown_session"),
    ("cancelled before requested", [], (X, 1), "unknown_session"),
    ("requested twice", [(R, 0)], (R, 1), "already_recorded"),
    ("matched twice", [(R, 0), (M, 1)], (M, 2), "already_recorded"),
    ("completed twice", [(R, 0), (M, 1), (C, 2)], (C, 3), "already_recorded"),
    ("surveyed twice", [(R, 0), (M, 1), (C, 2), (S, 3)], (S, 4), "already_recorded"),
    ("cancelled twice", [(R, 0), (X, 1)], (X, 2), "already_recorded"),
    ("completed before matched", [(R, 0)], (C, 1), "invalid_transition"),
    ("surveyed before completed", [(R, 0), (M, 1)], (S, 2), "invalid_transition"),
    ("surveyed right after requested", [(R, 0)], (S, 2), "invalid_transition"),
    ("cancelled after completed", [(R, 0), (M, 1), (C, 2)], (X, 3), "invalid_transition"),
    ("cancelled after surveyed", [(R, 0), (M, 1), (C, 2), (S, 3)], (X, 4), "invalid_transition"),
    ("matched after cancelled", [(R, 0), (X, 1)], (M, 2), "invalid_transition"),
    ("completed after cancelled", [(R, 0), (M, 1), (X, 2)], (C, 3), "invalid_transition"),
    ("surveyed after cancelled", [(R, 0), (M, 1), (X, 2)], (S, 3), "invalid_transition"),
    ("matched earlier than requested", [(R, 10)], (M, 9), "timestamp_regression"),
    ("completed earlier than matched", [(R, 0), (M, 10)], (C, 5), "timestamp_regression"),
    ("surveyed earlier than completed", [(R, 0), (M, 1), (C, 10)], (S, 9), "timestamp_regression"),
    ("cancelled earlier than matched", [(R, 0), (M, 10)], (X, 9), "timestamp_regression"),
]


@pytest.mark.parametrize(
    ("prior", "step", "expected"),
    [pytest.param(p, s, e, id=name) for name, p, s, e in REJECTIONS],
)
def test_rejected_step_changes_nothing(
    ledger: Ledger, prior: list[tuple[EventType, int]], step: tuple[EventType, int], expected: str
) -> None:
    assert {o.status for o in ledger.record_events([ev(s, m) for s, m in prior])} <= {"accepted"}
    before = ledger.get_session(DISTRICT, "s-1")
    head_before = ledger.recorder.head(DISTRICT)  # type: ignore[attr-defined]
    count_before = stored_count(ledger)

    bad = ev(step[0], step[1])
    (outcome,) = ledger.record_events([bad])

    assert outcome.status == "rejected"
    assert code(outcome) == expected
    assert outcome.event_id == bad["event_id"]
    assert outcome.position is None
    after = ledger.get_session(DISTRICT, "s-1")
    if before is None:
        assert after is None
    else:
        assert after is not None
        assert (after.version, after.status, after.steps, after.payloads) == (
            before.version,
            before.status,
            before.steps,
            before.payloads,
        )
    assert ledger.recorder.head(DISTRICT) == head_before  # type: ignore[attr-defined]
    assert stored_count(ledger) == count_before
    # The rejected event_id was not remembered: it is not a duplicate next time either.
    assert ledger.recorder.lookup_event_ids([uuid.UUID(bad["event_id"])]) == {}  # type: ignore[attr-defined]


def test_same_rejections_inside_one_batch(ledger: Ledger) -> None:
    events = [
        ev(M, 0),
        ev(R, 1),
        ev(C, 2),
        ev(R, 3),
        ev(M, 0),
        ev(M, 4),
        ev(M, 5),
        ev(S, 6),
        ev(C, 7),
        ev(X, 8),
        ev(S, 8),
    ]
    assert summary(ledger.record_events(events)) == [
        ("rejected", "unknown_session"),
        ("accepted", None),
        ("rejected", "invalid_transition"),
        ("rejected", "already_recorded"),
        ("rejected", "timestamp_regression"),
        ("accepted", None),
        ("rejected", "already_recorded"),
        ("rejected", "invalid_transition"),
        ("accepted", None),
        ("rejected", "invalid_transition"),
        ("accepted", None),
    ]
    assert stored_count(ledger) == 4
    session = ledger.get_session(DISTRICT, "s-1")
    assert session is not None and session.steps == {R: at(1), M: at(4), C: at(7), S: at(8)}


# --- idempotency -------------------------------------------------------------------------------


def test_duplicate_in_one_batch_is_stored_once(ledger: Ledger) -> None:
    requested = ev(R, 0)
    outcomes = ledger.record_events([requested, dict(requested), ev(M, 1)])
    assert summary(outcomes) == [("accepted", None), ("duplicate", None), ("accepted", None)]
    assert outcomes[1].event_id == requested["event_id"]
    assert outcomes[1].position == outcomes[0].position
    assert stored_count(ledger) == 2


def test_duplicate_across_calls_is_stored_once(ledger: Ledger) -> None:
    events = [ev(R, 0), ev(M, 1)]
    first = ledger.record_events(events)
    again = ledger.record_events(events)
    assert summary(again) == [("duplicate", None)] * 2
    assert [o.position for o in again] == [o.position for o in first]
    assert stored_count(ledger) == 2


def test_duplicate_after_reopening_is_stored_once(tmp_path: Path) -> None:
    events = [ev(R, 0), ev(M, 1), ev(C, 2)]
    first = ledger_at(tmp_path)
    try:
        original = first.record_events(events)
        head = first.recorder.head(DISTRICT)  # type: ignore[attr-defined]
    finally:
        first.close()
    reopened = ledger_at(tmp_path)
    try:
        again = reopened.record_events(list(reversed(events)))
        assert summary(again) == [("duplicate", None)] * 3
        assert [o.position for o in again] == [o.position for o in reversed(original)]
        assert stored_count(reopened) == 3
        assert reopened.recorder.head(DISTRICT) == head  # type: ignore[attr-defined]
    finally:
        reopened.close()


def test_duplicate_of_an_equivalent_spelling_is_a_duplicate(ledger: Ledger) -> None:
    """Same event, other offset and subject case: the canonical body is the same."""
    requested = ev(R, 0)
    ledger.record_events([requested])
    resent = {
        **requested,
        "occurred_at": "2026-03-02T10:00:00-05:00",
        "payload": {**requested["payload"], "subject": "MATH"},
    }
    assert summary(ledger.record_events([resent])) == [("duplicate", None)]


def test_duplicate_wins_over_lifecycle_rules(ledger: Ledger) -> None:
    """A resent step is a duplicate even though the step itself could not be recorded again."""
    requested, matched = ev(R, 0), ev(M, 5)
    ledger.record_events([requested, matched, ev(C, 9)])
    assert summary(ledger.record_events([matched, requested])) == [("duplicate", None)] * 2


@pytest.mark.parametrize("same_batch", [True, False])
@pytest.mark.parametrize(
    "change",
    [
        {"occurred_at": "2026-03-02T15:00:01Z"},
        {"payload": {**PAYLOADS[R], "grade": 6}},
        {"session_id": "s-2"},
        {"type": "session.cancelled", "payload": PAYLOADS[X]},
    ],
    ids=["time", "payload", "session", "type"],
)
def test_same_event_id_different_body_is_a_conflict(
    ledger: Ledger, same_batch: bool, change: dict[str, Any]
) -> None:
    original = ev(R, 0)
    other = {**original, **change}
    if same_batch:
        outcomes = ledger.record_events([original, other])
    else:
        outcomes = ledger.record_events([original]) + ledger.record_events([other])
    assert summary(outcomes) == [("accepted", None), ("rejected", "event_id_conflict")]
    assert outcomes[1].event_id == original["event_id"]
    assert stored_count(ledger) == 1
    assert ledger.get_session(DISTRICT, "s-2") is None


def test_rejected_event_id_may_be_sent_again(ledger: Ledger) -> None:
    """A rejected event is not stored, so its id is free: the corrected event is accepted."""
    matched = ev(M, 1)
    assert summary(ledger.record_events([matched])) == [("rejected", "unknown_session")]
    ledger.record_events([ev(R, 0)])
    assert summary(ledger.record_events([matched])) == [("accepted", None)]


def test_mixed_batch_keeps_good_events_in_request_order(ledger: Ledger) -> None:
    invalid = ev(R, 0, "bad")
    invalid["payload"]["grade"] = "3"
    no_id = ev(R, 0, "bad-2")
    del no_id["event_id"]
    events = [
        ev(R, 0, "a"),
        invalid,
        ev(M, 1, "a"),
        ev(C, 2, "b"),
        no_id,
        ev(R, 0, "b"),
        "not an object",
        ev(M, 3, "b"),
    ]
    outcomes = ledger.record_events(events)
    assert summary(outcomes) == [
        ("accepted", None),
        ("rejected", "invalid_event"),
        ("accepted", None),
        ("rejected", "unknown_session"),
        ("rejected", "invalid_event"),
        ("accepted", None),
        ("rejected", "invalid_event"),
        ("accepted", None),
    ]
    assert [o.event_id for o in outcomes] == [
        e["event_id"] if isinstance(e, dict) and "event_id" in e else None for e in events
    ]
    assert stored_count(ledger) == 4
    for name in ("a", "b"):
        session = ledger.get_session(DISTRICT, name)
        assert session is not None and session.status == "matched"
    assert ledger.get_session(DISTRICT, "bad") is None


def test_all_rejected_batch_stores_nothing(ledger: Ledger) -> None:
    outcomes = ledger.record_events([ev(M, 0), {"event_id": "x"}])
    assert [o.status for o in outcomes] == ["rejected", "rejected"]
    assert stored_count(ledger) == 0
    assert ledger.record_events([]) == []


# --- two processes, one store --------------------------------------------------------------------


def test_two_ledgers_racing_on_the_same_sessions_never_fork(tmp_path: Path) -> None:
    """Two Ledger instances on one SQLite file (two API processes), writing from two threads."""
    apps = [ledger_at(tmp_path), ledger_at(tmp_path)]
    sessions = [f"race-{i}" for i in range(20)]
    # Events both writers send with the same ids (an emitter retrying against either process)...
    shared = {s: [ev(R, 0, s), ev(C, 20, s), ev(S, 21, s)] for s in sessions}
    # ...and a `matched` per writer with its own id: only one tutor may win each session.
    own = [{s: ev(M, 10, s, tutor_id=f"tutor-{w}") for s in sessions} for w in range(2)]
    results: list[list[Outcome]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(w: int) -> None:
        try:
            barrier.wait()
            for s in sessions:  # same order: the writers collide on every session
                requested, completed, surveyed = shared[s]
                results[w] += apps[w].record_events([requested, own[w][s]])
                results[w] += apps[w].record_events([completed, surveyed])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        by_id: dict[str | None, Counter[str]] = {}
        positions: dict[str | None, set[int | None]] = {}
        for outcome in results[0] + results[1]:
            by_id.setdefault(outcome.event_id, Counter())[outcome.status] += 1
            if outcome.status != "rejected":
                positions.setdefault(outcome.event_id, set()).add(outcome.position)
        for s in sessions:
            for event in shared[s]:
                counts = by_id[event["event_id"]]
                assert counts["accepted"] == 1 and counts["duplicate"] == 1, counts
                assert len(positions[event["event_id"]]) == 1  # both name the one stored copy
            winners = [w for w in range(2) if by_id[own[w][s]["event_id"]]["accepted"]]
            assert len(winners) == 1, f"{s}: exactly one matched accepted"
            loser = own[1 - winners[0]][s]["event_id"]
            assert [
                (o.status, code(o)) for o in results[0] + results[1] if o.event_id == loser
            ] == [("rejected", "already_recorded")]
            for app in apps:
                session = app.get_session(DISTRICT, s)
                assert session is not None
                assert session.status == "surveyed"
                assert session.version == 4, "one stored event per step"
                assert session.payloads[M]["tutor_id"] == f"tutor-{winners[0]}"
        accepted = sum(c["accepted"] for c in by_id.values())
        assert accepted == 4 * len(sessions)
        rows = apps[0].recorder.chained_events(DISTRICT, 0, 10_000)  # type: ignore[attr-defined]
        assert len(rows) == accepted
    finally:
        for app in apps:
            app.close()


@pytest.mark.parametrize("step", [R, M])
def test_resend_that_races_another_writer_is_a_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: EventType
) -> None:
    """The other process stores the very same event right after our snapshot read."""
    mine, other = ledger_at(tmp_path), ledger_at(tmp_path)
    try:
        if step is not R:
            mine.record_events([ev(R, 0)])
        event = ev(step, 1)
        read = mine.recorder.read_batch  # type: ignore[attr-defined]
        theirs: list[Outcome] = []

        def read_then_lose_the_race(*args: Any, **kwargs: Any) -> Any:
            found = read(*args, **kwargs)
            if not theirs:
                theirs.extend(other.record_events([event]))
            return found

        monkeypatch.setattr(mine.recorder, "read_batch", read_then_lose_the_race)
        (outcome,) = mine.record_events([event])
        assert summary(theirs) == [("accepted", None)]
        assert (outcome.status, code(outcome)) == ("duplicate", None)
        assert outcome.position == theirs[0].position
        assert stored_count(mine) == (1 if step is R else 2)
    finally:
        mine.close()
        other.close()


@pytest.mark.parametrize("cache_size", [0, 50_000])
def test_a_session_another_writer_moved_is_judged_by_the_store_not_the_cache(
    tmp_path: Path, cache_size: int
) -> None:
    """Ours caches the session after its request; theirs cancels it: ours must then refuse a
    match (the stored steps), and still accept a new session's events after it."""
    mine, other = ledger_at(tmp_path), ledger_at(tmp_path)
    mine.session_cache.size = cache_size
    try:
        assert summary(mine.record_events([ev(R, 0)])) == [("accepted", None)]
        assert len(mine.session_cache) == (1 if cache_size else 0)
        assert summary(other.record_events([ev(X, 1)])) == [("accepted", None)]
        (refused,) = mine.record_events([ev(M, 2)])
        assert refused.status == "rejected" and code(refused) is not None
        assert summary(mine.record_events([ev(R, 3, "s-2"), ev(M, 4, "s-2")])) == [
            ("accepted", None),
            ("accepted", None),
        ]
        assert summary(mine.record_events([ev(C, 5, "s-2")])) == [("accepted", None)]
        assert stored_count(mine) == 5
    finally:
        mine.close()
        other.close()
