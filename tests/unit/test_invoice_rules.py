"""The matching rules of invoice reconciliation against an independent count, on generated
invoices and ledgers: every billed line lands in exactly one place (matched or billed but
not recorded), no session is matched twice, the unbilled sessions are exactly the
completed in-period ones no line matched, minute differences are exactly the matched pairs
beyond the tolerance, and a line naming its session is never beaten to it by a line by time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tutorledger.domain.invoice import BilledLine, Period, RecordedSession, reconcile

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=30)
TOLERANCE = Decimal(2)


def day_of(at: datetime) -> date:
    return at.date()


@st.composite
def ledgers(draw: st.DrawFn) -> list[RecordedSession]:
    sessions = []
    for n in range(draw(st.integers(0, 12))):
        start = START + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
        fate = draw(st.sampled_from(["completed", "cancelled", "open"]))
        length = timedelta(minutes=draw(st.integers(1, 90)))
        sessions.append(
            RecordedSession(
                f"s{n}",
                student_token=draw(st.sampled_from(["tokA", "tokB", "tokC"])),
                requested_at=start,
                matched_at=start,
                completed_at=start + length if fate == "completed" else None,
                cancelled_at=start + length if fate == "cancelled" else None,
            )
        )
    return sessions


@st.composite
def invoices(draw: st.DrawFn, sessions: list[RecordedSession]) -> list[BilledLine]:
    lines = []
    for line in range(2, 2 + draw(st.integers(0, 15))):
        minutes = Decimal(draw(st.integers(0, 100)))
        if draw(st.booleans()):
            ids = [s.session_id for s in sessions] + ["nope"]
            sid = draw(st.sampled_from(ids))
            lines.append(BilledLine(line, sid, None, None, minutes, Decimal(10)))
        elif sessions and draw(st.booleans()):  # near a session: matches unless too far
            near = draw(st.sampled_from(sessions))
            assert near.started_at is not None
            at = near.started_at + timedelta(minutes=draw(st.integers(-40, 40)))
            token = draw(st.sampled_from([near.student_token, "tokA", None]))
        else:
            at = START + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
            token = draw(st.sampled_from(["tokA", "tokB", "tokC", None]))
            lines.append(BilledLine(line, None, at, token, minutes, Decimal(10)))
    return lines


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_line_lands_once_and_the_findings_match_an_independent_count(
    data: st.DataObject,
) -> None:
    sessions = data.draw(ledgers())
    billed = data.draw(invoices(sessions))
    period = Period(START.date(), (START + timedelta(days=1)).date())
    out = reconcile(billed, sessions, tolerance=TOLERANCE, window=WINDOW, period=period,
                    local_day=day_of)  # fmt: skip

    matched_lines = [b.line for b, _ in out.matched]
    unmatched_lines = [b.line for b, _ in out.billed_not_recorded]
    assert sorted(matched_lines + unmatched_lines) == [b.line for b in billed]
    taken = [s.session_id for _, s in out.matched]
    assert len(taken) == len(set(taken))
    for b, s in out.matched:
        assert s.completed_at is not None
        if b.session_id is not None:
            assert b.session_id == s.session_id
        else:
            assert b.student_token == s.student_token and s.started_at is not None
            assert b.billed_at is not None and abs(s.started_at - b.billed_at) <= WINDOW

    in_period = [s for s in sessions if s.completed_at is not None and s.matched_at is not None
                 and period.holds(s.matched_at.date())]  # fmt: skip
    expected_unbilled = {s.session_id for s in in_period} - set(taken)
    assert {s.session_id for s in out.recorded_not_billed} == expected_unbilled

    recorded = {s.session_id: s.minutes or Decimal(0) for s in sessions}
    expected_diffs = {
        b.line for b, s in out.matched if abs(b.minutes - recorded[s.session_id]) > TOLERANCE
    }
    assert {b.line for b, _, _ in out.minute_differences} == expected_diffs

    named = {b.session_id for b in billed if b.session_id is not None}
    for b, s in out.matched:  # a session some line names by id goes to the first such line
        if s.session_id in named:
            first = min(x.line for x in billed if x.session_id == s.session_id)
            assert b.line == first


def test_a_line_by_time_never_takes_the_session_a_later_line_names() -> None:
    s1 = RecordedSession("s1", "tokA", START, START, START + timedelta(minutes=30))
    s2 = RecordedSession("s2", "tokA", START + timedelta(minutes=20),
                         START + timedelta(minutes=20), START + timedelta(minutes=50))  # fmt: skip
    by_time = BilledLine(2, None, START, "tokA", Decimal(30), Decimal(10))  # nearest: s1
    by_id = BilledLine(3, "s1", None, None, Decimal(30), Decimal(10))
    out = reconcile([by_time, by_id], [s1, s2], tolerance=TOLERANCE, window=WINDOW,
                    period=None, local_day=day_of)  # fmt: skip
    assert [(b.line, s.session_id) for b, s in out.matched] == [(2, "s2"), (3, "s1")]
    assert out.billed_not_recorded == [] and out.recorded_not_billed == []
