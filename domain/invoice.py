"""Invoice reconciliation: what a provider billed against what the ledger recorded.

Pure rules, no I/O. A billed line names its session by id, or by a time and a student
(a token here: the caller looks the student up; the id never reaches this module). Each
line is matched to at most one recorded session and each session to at most one line:

- by id: the recorded session with that id;
- by time and student: that student's not yet matched session whose start (matched, else
  requested) is nearest the billed time, within `window` either side.

Lines naming a session id are matched first, then those giving a time and a student.
Then: a line matching nothing, or a session that was not completed (cancelled, or never
finished), or a session already billed by an earlier line, is **billed but not recorded**
(with the reason); a completed session starting in the period that no line matched is
**recorded but not billed**; a matched pair whose minutes differ by more than `tolerance`
is a **minute difference**. Recorded minutes are completed − matched (else − requested).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

Reason = Literal["unknown_session", "no_session_at_time", "unknown_student", "cancelled",
                 "not_completed", "billed_twice"]  # fmt: skip


DayOf = Callable[[datetime], date]  # an instant's day in the district's zone


@dataclass(frozen=True)
class BilledLine:
    """One invoice row, read and checked."""

    line: int
    session_id: str | None
    billed_at: datetime | None
    student_token: str | None  # None with a time: the student is not known to the ledger
    minutes: Decimal
    amount: Decimal


@dataclass
class RecordedSession:
    """One session of the district as the ledger holds it (folded from its events)."""

    session_id: str
    student_token: str | None = None
    requested_at: datetime | None = None
    matched_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    provider: str | None = None

    @property
    def started_at(self) -> datetime | None:
        return self.matched_at or self.requested_at

    @property
    def minutes(self) -> Decimal | None:
        if self.completed_at is None or self.started_at is None:
            return None
        seconds = (self.completed_at - self.started_at).total_seconds()
        return (Decimal(seconds) / 60).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Period:
    """Days (inclusive) whose completed sessions the invoice should cover."""

    first: date
    last: date

    def holds(self, day: date) -> bool:
        return self.first <= day <= self.last


@dataclass
class Reconciliation:
    """The findings; `as_dict` is the report (ids, times and figures, never a student)."""

    billed_not_recorded: list[tuple[BilledLine, Reason]] = field(default_factory=list)
    recorded_not_billed: list[RecordedSession] = field(default_factory=list)
    minute_differences: list[tuple[BilledLine, RecordedSession, Decimal]] = field(
        default_factory=list
    )
    matched: list[tuple[BilledLine, RecordedSession]] = field(default_factory=list)
    billed: list[BilledLine] = field(default_factory=list)
    recorded: list[RecordedSession] = field(default_factory=list)
    period: Period | None = None  # the days whose completed sessions were expected billed


def reconcile(
    billed: Sequence[BilledLine],
    sessions: Iterable[RecordedSession],
    *,
    tolerance: Decimal,
    window: timedelta,
    period: Period | None,
    local_day: DayOf,
) -> Reconciliation:
    """Match lines to sessions and sort out the differences (see the module docstring).
    `local_day(instant) -> date` gives the district's day of an instant; with no period,
    it runs from the first to the last day any matched session or billed time falls on."""
    recorded = list(sessions)
    by_id = {s.session_id: s for s in recorded}
    by_student: dict[str, list[RecordedSession]] = {}
    for s in recorded:
        if s.student_token is not None and s.started_at is not None:
            by_student.setdefault(s.student_token, []).append(s)
    out = Reconciliation(billed=list(billed))
    taken: set[str] = set()
    # Lines naming their session first: a line matched by time never takes the session a
    # later line names by id. Findings come out in line order all the same.
    for line in sorted(billed, key=lambda b: (b.session_id is None, b.line)):
        found, reason = _find(line, by_id, by_student, taken, window)
        if found is None:
            out.billed_not_recorded.append((line, reason))
            continue
        taken.add(found.session_id)
        minutes = found.minutes
        if minutes is None:
            late: Reason = "cancelled" if found.cancelled_at is not None else "not_completed"
            out.billed_not_recorded.append((line, late))
            continue
        out.matched.append((line, found))
        if abs(line.minutes - minutes) > tolerance:
            out.minute_differences.append((line, found, line.minutes - minutes))
    for found_list in (out.billed_not_recorded, out.matched, out.minute_differences):
        found_list.sort(key=lambda f: f[0].line)
    span = out.period = period or _span(out, local_day)
    out.recorded = [s for s in recorded if _in(s, span, local_day) and s.minutes is not None]
    out.recorded_not_billed = [s for s in out.recorded if s.session_id not in taken]
    return out


def _find(
    line: BilledLine,
    by_id: dict[str, RecordedSession],
    by_student: dict[str, list[RecordedSession]],
    taken: set[str],
    window: timedelta,
) -> tuple[RecordedSession | None, Reason]:
    if line.session_id is not None:
        found = by_id.get(line.session_id)
        if found is None:
            return None, "unknown_session"
        return (None, "billed_twice") if found.session_id in taken else (found, "unknown_session")
    if line.student_token is None:
        return None, "unknown_student"
    assert line.billed_at is not None
    at = line.billed_at
    near = [s for s in by_student.get(line.student_token, [])
            if s.started_at is not None and abs(s.started_at - at) <= window]  # fmt: skip
    free = [s for s in near if s.session_id not in taken]
    if not free:
        return None, ("billed_twice" if near else "no_session_at_time")
    return min(free, key=lambda s: (abs(_start(s) - at), s.session_id)), "no_session_at_time"


def _start(s: RecordedSession) -> datetime:
    assert s.started_at is not None
    return s.started_at


def _span(out: Reconciliation, local_day: DayOf) -> Period | None:
    days = [local_day(s.started_at) for _, s in out.matched if s.started_at is not None]
    days += [local_day(b.billed_at) for b in out.billed if b.billed_at is not None]
    return Period(min(days), max(days)) if days else None


def _in(s: RecordedSession, period: Period | None, local_day: DayOf) -> bool:
    return period is not None and s.started_at is not None and period.holds(local_day(s.started_at))


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def _money(value: Decimal) -> str:
    return str(value)


def _billed(line: BilledLine) -> dict[str, Any]:
    return {"line": line.line, "session_id": line.session_id, "billed_at": _iso(line.billed_at),
            "minutes": str(line.minutes), "amount": _money(line.amount)}  # fmt: skip


def _recorded(s: RecordedSession) -> dict[str, Any]:
    minutes = s.minutes
    return {"session_id": s.session_id, "started_at": _iso(s.started_at),
            "minutes": None if minutes is None else str(minutes)}  # fmt: skip


def _sum(values: Iterable[Decimal]) -> str:
    return str(sum(values, Decimal(0)))


def report(result: Reconciliation, header: dict[str, Any]) -> dict[str, Any]:
    """The report as plain JSON values, with `report_sha256` over everything else in it."""
    r = result
    body: dict[str, Any] = {
        **header,
        "totals": {
            "billed": {
                "sessions": len(r.billed),
                "minutes": _sum(b.minutes for b in r.billed),
                "amount": _sum(b.amount for b in r.billed),
            },
            "recorded": {
                "sessions": len(r.recorded),
                "minutes": _sum(s.minutes or Decimal(0) for s in r.recorded),
            },
            "matched": {"sessions": len(r.matched), "amount": _sum(b.amount for b, _ in r.matched)},
            "billed_not_recorded": {
                "sessions": len(r.billed_not_recorded),
                "amount": _sum(b.amount for b, _ in r.billed_not_recorded),
            },
            "recorded_not_billed": {
                "sessions": len(r.recorded_not_billed),
                "minutes": _sum(s.minutes or Decimal(0) for s in r.recorded_not_billed),
            },
            "minute_differences": {
                "sessions": len(r.minute_differences),
                "minutes": _sum(d for _, _, d in r.minute_differences),
            },
        },  # fmt: skip
        "billed_not_recorded": [{**_billed(b), "reason": why} for b, why in r.billed_not_recorded],
        "recorded_not_billed": [_recorded(s) for s in r.recorded_not_billed],
        "minute_differences": [
            {
                **_billed(b),
                "recorded_minutes": str(s.minutes),
                "difference": str(d),
                "session_id": s.session_id,
            }  # fmt: skip
            for b, s, d in r.minute_differences
        ],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    body["report_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
    return body
