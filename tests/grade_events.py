"""A district with grades in two terms and a built-in association between tutoring use and
grade change (each completed algebra session between the terms adds 1.5 points), plus the
sessions that must NOT count: on the first grading date, after the second, another subject,
cancelled. `expected()` folds them independently of the SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from builders import envelope

TZ = "America/New_York"
TERM_FROM, TERM_TO = "2026-fall", "2026-winter"
GRADED = {TERM_FROM: date(2026, 10, 16), TERM_TO: date(2026, 11, 6)}
USES = (0, 1, 2, 3, 5, 9, 10, 14)  # completed algebra sessions in the window, by student
LETTERS = {"A": 95.0, "B": 85.0, "C": 75.0, "D": 65.0}


@dataclass
class GradedDistrict:
    district_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)  # the grades CSV, in order
    grades: dict[str, tuple[float, float]] = field(default_factory=dict)  # both terms only
    used: dict[str, int] = field(default_factory=dict)


def _at(day: date, hour: int, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(TZ))


def _session(
    g: GradedDistrict, sid: str, student: str, at: datetime, subject: str, end: str
) -> None:
    request = {"school_id": "sch-01", "student_id": student, "grade": 8, "subject": subject}
    steps = [("requested", request, 0), ("matched", {"tutor_id": "t-1"}, 2)]
    steps.append((end, {"reason": "student_left"} if end == "cancelled" else {}, 30))
    for kind, payload, minutes in steps:
        when = (at + timedelta(minutes=minutes)).isoformat()
        g.events.append(envelope(g.district_id, sid, kind, when, payload))


def generate(district_id: str, students: int = 64) -> GradedDistrict:
    g = GradedDistrict(district_id)
    start, end = GRADED[TERM_FROM], GRADED[TERM_TO]
    for i in range(students):
        s = f"{district_id}-s{i:03d}"
        uses = USES[i % len(USES)]
        for k in range(uses):  # inside the window, the first at 00:10 on its first local day
            day = start + timedelta(days=1 + (k * 3) % (end - start).days)
            _session(g, f"{s}-a{k}", s, _at(day, 0 if k == 0 else 17, 10), "algebra", "completed")
        _session(g, f"{s}-before", s, _at(start, 20, 0), "algebra", "completed")  # grading day
        _session(g, f"{s}-after", s, _at(end + timedelta(days=1), 0, 30), "algebra", "completed")
        _session(g, f"{s}-geo", s, _at(start + timedelta(days=3), 18, 0), "geometry", "completed")
        _session(g, f"{s}-gone", s, _at(start + timedelta(days=4), 18, 0), "algebra", "cancelled")
        before = 50.0 + (i * 7) % 25
        after = before + 1.5 * uses + ((i % 3) - 1)
        if i % 16 == 15:  # graded in the first term only: not counted
            g.rows.append(
                {"student": s, "subject": "Algebra", "term": TERM_FROM, "grade": str(before)}
            )
            continue
        if i % 10 == 4:  # a letter grade, mapped by the declared scale
            before = LETTERS["C"]
            after = before + 1.5 * uses
            g.rows.append({"student": s, "subject": "Algebra", "term": TERM_FROM, "grade": "c"})
        else:
            g.rows.append(
                {"student": s, "subject": "Algebra", "term": TERM_FROM, "grade": str(before)}
            )
        g.rows.append({"student": s, "subject": "Algebra", "term": TERM_TO, "grade": str(after)})
        g.grades[s] = (before, after)
        g.used[s] = uses
    return g


def mapping_toml() -> str:
    terms = "\n".join(f'"{t}" = "{d.isoformat()}"' for t, d in GRADED.items())
    letters = "\n".join(f'"{k}" = {v}' for k, v in LETTERS.items())
    return f"[terms]\n{terms}\n\n[letters]\n{letters}\n"


def csv_text(rows: list[dict[str, str]]) -> str:
    lines = ["student,subject,term,grade"]
    lines += [f"{r['student']},{r['subject']},{r['term']},{r['grade']}" for r in rows]
    return "\n".join(lines) + "\n"
