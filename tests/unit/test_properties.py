"""Property tests: the ledger agrees with a tiny independent model of docs/contract.md §1.

The model below is written from the contract text, not from `check_step`: a session is the
list of steps accepted so far; a step may follow only the *last accepted* step; ids are
idempotency keys compared on the normalised body.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from builders import envelope
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tutorledger.domain.ledger import Ledger, Outcome
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SESSIONS = [("d-a", "s-1"), ("d-a", "s-2"), ("d-b", "s-1")]
KINDS = ["requested", "matched", "completed", "surveyed", "cancelled"]
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
# Which step must be the last accepted one for a step to be allowed (from docs/contract.md §1).
MAY_FOLLOW = {
    "matched": {"requested"},
    "completed": {"matched"},
    "surveyed": {"completed"},
    "cancelled": {"requested", "matched"},
}


# --- generating event streams ------------------------------------------------------------------


def payload_for(kind: str, variant: int) -> dict[str, Any]:
    return {
        "requested": {
            "school_id": "sch-1",
            "student_id": f"stu-{variant}",
            "grade": variant % 13,
            "subject": "Math" if variant % 2 else "math",
        },
        "matched": {"tutor_id": f"tutor-{variant}"},
        "completed": {"outcome": "resolved"} if variant % 2 else {},
        "surveyed": {"helped": variant % 2 == 0, "rating": 1 + variant % 5},
        "cancelled": {"reason": "timeout"},
    }[kind]


def render(
    event_id: uuid.UUID, session: int, kind: str, minute: int, variant: int, zone: int
) -> dict[str, Any]:
    district, session_id = SESSIONS[session]
    instant = (T0 + timedelta(minutes=minute)).astimezone(ZONES[zone])
    payload = payload_for(kind, variant)
    return envelope(district, session_id, kind, instant.isoformat(), payload, str(event_id))


MALFORMATIONS = ["naive_time", "grade_string", "unknown_field", "unknown_type", "no_session"]


def malform(raw: dict[str, Any], how: str) -> dict[str, Any]:
    bad = {**raw, "payload": dict(raw["payload"])}
    if how == "naive_time":
        bad["occurred_at"] = "2026-03-02T15:00:00"
    elif how == "grade_string":
        bad["type"], bad["payload"] = (
            "session.requested",
            {**payload_for("requested", 3), "grade": "3"},
        )
    elif how == "unknown_field":
        bad["payload"]["student_name"] = "Jane Doe"
    elif how == "unknown_type":
        bad["type"] = "session.paused"
    else:
        del bad["session_id"]
    return bad


LIFECYCLE = ["requested", "matched", "completed", "surveyed"]


@st.composite
def event_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Mostly plausible lifecycles, with time going backwards, resends, conflicts and junk."""
    events: list[dict[str, Any]] = []
    minute = dict.fromkeys(range(len(SESSIONS)), 0)
    progress = dict.fromkeys(range(len(SESSIONS)), 0)  # a bias towards the next step, no more
    for n in range(draw(st.integers(1, 30))):
        action = draw(st.sampled_from(["step"] * 6 + ["resend"] * 2 + ["conflict", "malformed"]))
        if action in ("resend", "conflict") and events:
            original = draw(st.sampled_from(events[-5:]))
            event_id = uuid.UUID(original["event_id"])
        else:
            event_id, original = uuid.UUID(int=n + 1), None
        session = draw(st.integers(0, len(SESSIONS) - 1))
        minute[session] += draw(st.integers(-2, 4))  # sometimes backwards, often equal
        zone = draw(st.integers(0, len(ZONES) - 1))
        if action == "resend" and original is not None:
            # The very same event, possibly spelt with another offset / subject case.
            event = dict(original)
            instant = datetime.fromisoformat(original["occurred_at"])
            if instant.tzinfo is not None and draw(st.booleans()):
                event["occurred_at"] = instant.astimezone(ZONES[zone]).isoformat()
        else:
            pick = draw(st.sampled_from(["next"] * 4 + ["cancel", "any"]))
            if pick == "next" and progress[session] < len(LIFECYCLE):
                kind = LIFECYCLE[progress[session]]
                progress[session] += 1
            else:
                kind = draw(st.sampled_from(KINDS)) if pick == "any" else "cancelled"
            event = render(event_id, session, kind, minute[session], draw(st.integers(0, 3)), zone)
            if action == "malformed":
                event = malform(event, draw(st.sampled_from(MALFORMATIONS)))
        events.append(event)
    return events


def batch_sizes(count: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, max(count, 1)), min_size=1, max_size=count).map(
        lambda sizes: sizes + [count]  # whatever is left goes in a final batch
    )


def split(events: list[Any], sizes: list[int]) -> Iterator[list[Any]]:
    start = 0
    for size in sizes:
        if start >= len(events):
            return
        yield events[start : start + size]
        start += size


# --- the independent model --------------------------------------------------------------------


@dataclass
class ModelSession:
    steps: list[tuple[str, datetime]] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [k for k, _ in self.steps]


@dataclass
class Model:
    sessions: dict[tuple[str, str], ModelSession] = field(default_factory=dict)
    stored: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # event_id -> body key
    positions: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def valid(raw: dict[str, Any]) -> bool:
        if set(raw) != {
            "event_id",
            "type",
            "schema_version",
            "district_id",
            "session_id",
            "occurred_at",
            "payload",
        }:
            return False
        if raw["type"].removeprefix("session.") not in KINDS:
            return False
        at = datetime.fromisoformat(raw["occurred_at"])
        payload = raw["payload"]
        if at.tzinfo is None or "student_name" in payload:
            return False
        return not isinstance(payload.get("grade", 0), str)

    @staticmethod
    def body(raw: dict[str, Any]) -> tuple[Any, ...]:
        """What makes two sends 'the same event': the instant and the lower-cased subject."""
        payload = dict(raw["payload"])
        if "subject" in payload:
            payload["subject"] = payload["subject"].lower()
        instant = datetime.fromisoformat(raw["occurred_at"]).astimezone(UTC)
        return (
            raw["type"],
            raw["district_id"],
            raw["session_id"],
            instant,
            tuple(sorted(payload.items())),
        )

    def predict(self, raw: dict[str, Any]) -> tuple[str, str | None]:
        """(status, error code) the contract requires; updates the model when accepted."""
        if not self.valid(raw):
            return "rejected", "invalid_event"
        event_id = raw["event_id"]
        if event_id in self.stored:
            if self.stored[event_id] == self.body(raw):
                return "duplicate", None
            return "rejected", "event_id_conflict"
        key = (raw["district_id"], raw["session_id"])
        kind = raw["type"].removeprefix("session.")
        at = datetime.fromisoformat(raw["occurred_at"])
        session = self.sessions.get(key)
        if session is None:
            if kind != "requested":
                return "rejected", "unknown_session"
            session = self.sessions[key] = ModelSession()
        elif kind in session.kinds:
            return "rejected", "already_recorded"
        elif session.kinds[-1] not in MAY_FOLLOW[kind]:
            return "rejected", "invalid_transition"
        elif at < session.steps[-1][1]:
            return "rejected", "timestamp_regression"
        session.steps.append((kind, at))
        self.stored[event_id] = self.body(raw)
        return "accepted", None


# --- helpers -------------------------------------------------------------------------------------


@contextmanager
def fresh_ledger() -> Iterator[Ledger]:
    with tempfile.TemporaryDirectory() as tmp:
        app = open_ledger(Settings(event_store=f"sqlite:///{tmp}/l.db"))
        try:
            yield app
        finally:
            app.close()


def stored_count(ledger: Ledger) -> int:
    return ledger.recorder.max_notification_id() or 0


def observed(outcome: Outcome) -> tuple[str, str | None]:
    return outcome.status, outcome.error.code if outcome.error else None


def ledger_state(ledger: Ledger) -> dict[tuple[str, str], Any]:
    state = {}
    for district, session_id in SESSIONS:
        session = ledger.get_session(district, session_id)
        if session is not None:
            steps = sorted((str(k).removeprefix("session."), v) for k, v in session.steps.items())
            state[(district, session_id)] = (session.status, steps, session.version)
    return state


def model_state(model: Model) -> dict[tuple[str, str], Any]:
    return {key: (s.kinds[-1], sorted(s.steps), len(s.steps)) for key, s in model.sessions.items()}


def run(ledger: Ledger, events: list[dict[str, Any]], sizes: list[int]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for batch in split(events, sizes):
        outcomes += ledger.record_events(batch)
    return outcomes


# --- the properties -------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), events=event_streams())
def test_ledger_agrees_with_the_model(data: st.DataObject, events: list[dict[str, Any]]) -> None:
    sizes = data.draw(batch_sizes(len(events)), label="batch sizes")
    model = Model()
    with fresh_ledger() as ledger:
        for batch in split(events, sizes):
            head_before = {d: ledger.recorder.head(d) for d in ("d-a", "d-b")}  # type: ignore[attr-defined]
            outcomes = ledger.record_events(batch)
            assert len(outcomes) == len(batch)
            accepted_now = 0
            for raw, outcome in zip(batch, outcomes, strict=True):
                expected = model.predict(raw)
                event(f"{expected[0]} {expected[1] or ''}".strip())  # --hypothesis-show-statistics
                assert observed(outcome) == expected, (raw, outcome)
                assert outcome.event_id == raw.get("event_id")
                if expected[0] == "accepted":
                    accepted_now += 1
                    assert outcome.position is not None
                    assert outcome.position not in model.positions.values()
                    model.positions[raw["event_id"]] = outcome.position
                elif expected[0] == "duplicate":
                    assert outcome.position == model.positions[raw["event_id"]]
                else:
                    assert outcome.position is None
            # Only accepted events were stored; the rest changed nothing.
            assert stored_count(ledger) == len(model.stored)
            assert ledger_state(ledger) == model_state(model)
            if accepted_now == 0:
                assert {d: ledger.recorder.head(d) for d in ("d-a", "d-b")} == head_before  # type: ignore[attr-defined]
        # Each session's steps were stored in lifecycle order.
        for key, session in model.sessions.items():
            ids = [eid for eid, body in model.stored.items() if (body[1], body[2]) == key]
            by_position = sorted(ids, key=model.positions.__getitem__)
            kinds = [model.stored[eid][0].removeprefix("session.") for eid in by_position]
            assert kinds == session.kinds


@SETTINGS
@given(data=st.data(), events=event_streams())
def test_batch_split_does_not_change_the_result(
    data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    splits = [[1] * len(events), [len(events)], data.draw(batch_sizes(len(events)), label="sizes")]
    results = []
    for sizes in splits:
        with fresh_ledger() as ledger:
            outcomes = run(ledger, events, sizes)
            results.append(
                (
                    [observed(o) for o in outcomes],
                    [o.event_id for o in outcomes],
                    stored_count(ledger),
                    ledger_state(ledger),
                )
            )
    assert results[1] == results[0]
    assert results[2] == results[0]
