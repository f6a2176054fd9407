"""A realistic synthetic district: schools with enrolment, students, sessions with their lifecycle.

Deterministic for a seed (event ids are derived from it), so loading the same district
twice yields duplicates the ledger recognises rather than a doubled district.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

SUBJECTS = (
    ("algebra", 22), ("geometry", 10), ("reading", 18), ("writing", 10), ("biology", 8),
    ("chemistry", 6), ("physics", 5), ("spanish", 6), ("us-history", 7), ("calculus", 4),
    ("statistics", 4),
)  # fmt: skip
HOTSPOT_SUBJECT = "geometry"
TUTORS = 400  # the vendor's bench; more are booked only when all are in sessions


@dataclass(frozen=True)
class DistrictSpec:
    district_id: str = "demo-district"
    schools: int = 8
    students: int = 1500
    days: int = 28
    start: date = date(2026, 9, 7)
    tz: str = "America/New_York"
    seed: int = 7
    duplicate_rate: float = 0.01


@dataclass
class District:
    spec: DistrictSpec
    schools: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # in emission order, with resends

    @property
    def hotspot_school(self) -> str:
        school_id: str = self.schools[min(2, len(self.schools) - 1)]["school_id"]
        return school_id


def _local(day: date, minute_of_day: int, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time()).replace(tzinfo=tz) + timedelta(minutes=minute_of_day)


def _request_minute(rng: random.Random, weekday: int) -> int:
    """Most requests come after school; some during the school day and on weekends."""
    if weekday >= 5 or rng.random() < 0.62:
        return rng.randint(15 * 60 + 31, 22 * 60 + 30)
    return rng.randint(8 * 60, 15 * 60 + 29)


Student = tuple[str, str, int]  # student id, school id, grade
Raw = tuple[datetime, int, dict[str, Any]]  # time, emission order, event
Emit = Callable[[str, str, datetime, dict[str, Any]], None]  # kind, session, time, payload


def generate(spec: DistrictSpec) -> District:
    """Build the district; events are sorted by time, with a few duplicate resends.

    One random stream drives it all, in a fixed order (roster, then each student's sessions,
    then the resends), so a seed always yields the same district.
    """
    rng = random.Random(spec.seed)
    district = District(spec)
    district.schools, students = _roster(spec, rng)
    emit = _Emitter(spec)
    sessions = _Sessions(spec, rng, emit, district.hotspot_school)
    for student in students:
        sessions.of_student(student)
    events = emit.in_time_order()
    _book_tutors(events)
    district.events = _with_resends(events, rng, spec.duplicate_rate)
    return district


def _book_tutors(events: list[dict[str, Any]]) -> None:
    """Give each matched session a tutor who is free from its match to its end (completed or
    cancelled), the one free longest first, from 400 and more when all are busy: a vendor's
    tutor is in one session at a time, so the tutor-overlap audit finds nothing here that
    a test did not plant. Draws nothing from the random stream."""
    ends: dict[str, datetime] = {}
    for e in events:
        if e["type"] in ("session.completed", "session.cancelled"):
            ends[e["session_id"]] = datetime.fromisoformat(e["occurred_at"])
    free: deque[int] = deque(range(1, TUTORS + 1))
    busy: list[tuple[datetime, int]] = []  # (free again at, tutor), a heap
    for e in events:
        if e["type"] != "session.matched":
            continue
        at = datetime.fromisoformat(e["occurred_at"])
        while busy and busy[0][0] <= at:  # half-open: one ending as this starts is free
            free.append(heapq.heappop(busy)[1])
        tutor = free.popleft() if free else TUTORS + len(busy) + 1
        e["payload"]["tutor_id"] = f"tut-{tutor:04d}"
        heapq.heappush(busy, (ends.get(e["session_id"], at), tutor))


def _roster(spec: DistrictSpec, rng: random.Random) -> tuple[list[dict[str, Any]], list[Student]]:
    """Schools and students, round-robin. Enrolment is the roster: every student counts
    in their school's grade, and the one in ten who never asks brings reach to about 90 %
    (Clayton County's figure), as the roster groups' denominator does."""
    schools: list[dict[str, Any]] = [
        {"school_id": f"sch-{i + 1:02d}", "name": f"School {i + 1}"} for i in range(spec.schools)
    ]
    students: list[Student] = []
    per_grade: dict[tuple[str, int], int] = {}
    for n in range(spec.students):
        school = schools[n % spec.schools]["school_id"]
        grade = rng.randint(0, 12)
        students.append((f"stu-{n + 1:06d}", school, grade))
        per_grade[(school, grade)] = per_grade.get((school, grade), 0) + 1
    for school in schools:
        school["enrollment"] = {
            str(g): per_grade.get((school["school_id"], g), 0) for g in range(13)
        }
        school["as_of"] = spec.start - timedelta(days=7)
    return schools, students


class _Emitter:
    """Collects events with ids derived from the seed (a re-run yields the same ids)."""

    def __init__(self, spec: DistrictSpec) -> None:
        self.district_id = spec.district_id
        self.ns = uuid5(UUID(int=0), f"{spec.district_id}/{spec.seed}")
        self.raw: list[Raw] = []

    def __call__(self, kind: str, session: str, at: datetime, payload: dict[str, Any]) -> None:
        self.raw.append((at, len(self.raw) + 1, {
            "event_id": str(uuid5(self.ns, f"{session}/{kind}")),
            "type": f"session.{kind}", "schema_version": 1,
            "district_id": self.district_id, "session_id": session,
            "occurred_at": at.isoformat(), "payload": payload,
        }))  # fmt: skip

    def in_time_order(self) -> list[dict[str, Any]]:
        """By time; events at the same instant in the order they were emitted."""
        return [event for _, _, event in sorted(self.raw, key=lambda r: (r[0], r[1]))]


class _Sessions:
    """Each student's sessions: a request, then one of the lifecycle's fates."""

    def __init__(
        self, spec: DistrictSpec, rng: random.Random, emit: _Emitter, hotspot: str
    ) -> None:
        self.spec, self.rng, self.emit, self.hotspot = spec, rng, emit, hotspot
        self.tz = ZoneInfo(spec.tz)
        self.end = _local(spec.start + timedelta(days=spec.days), 0, self.tz)
        self.subjects, self.weights = zip(*SUBJECTS, strict=True)

    def of_student(self, student: Student) -> None:
        """None (10%), one (30%) or 2-9 sessions."""
        roll = self.rng.random()
        count = 0 if roll < 0.1 else 1 if roll < 0.4 else self.rng.randint(2, 9)
        for k in range(count):
            sid, requested = self.request(student, k)
            self.follow(sid, requested)

    def request(self, student: Student, k: int) -> tuple[str, datetime]:
        """Emit the student's k-th request (the hotspot school asks for geometry half the
        time); returns its session id and time."""
        rng, spec = self.rng, self.spec
        student_id, school, grade = student
        day = spec.start + timedelta(days=rng.randrange(spec.days))
        requested = _local(day, _request_minute(rng, day.weekday()), self.tz)
        requested += timedelta(seconds=rng.randint(0, 59), microseconds=rng.randint(0, 999) * 1000)
        hot = school == self.hotspot and rng.random() < 0.5
        subject = HOTSPOT_SUBJECT if hot else rng.choices(self.subjects, self.weights)[0]
        # Session ids must not embed the student id: they are stored in clear and would
        # outlive an erasure (the id itself is sealed).
        sid = f"ses-{uuid5(self.emit.ns, f'{student_id}/{k}').hex[:16]}"
        payload: dict[str, Any] = {"school_id": school, "student_id": student_id,
                                   "grade": grade, "subject": subject}  # fmt: skip
        if rng.random() < 0.2:
            payload["topic"] = f"{subject} unit {rng.randint(1, 9)}"
        self.emit("requested", sid, requested, payload)
        return sid, requested

    def follow(self, sid: str, requested: datetime) -> None:
        follow(self.rng, self.emit, sid, requested, self.end + timedelta(days=3))


def follow(
    rng: random.Random, emit: Emit, sid: str, requested: datetime, survey_until: datetime
) -> None:
    """After the request: never matched (3%), cancelled while waiting (4%), or matched,
    then cancelled (3%) or completed, and surveyed (60%) up to three days later if the
    survey comes before `survey_until`. Shared with bench.stream_district."""
    fate = rng.random()
    if fate < 0.03:
        return
    if fate < 0.07:
        wait = timedelta(seconds=rng.randint(120, 900))
        reason = rng.choice(["no_tutor_available", "timeout", "student_left"])
        emit("cancelled", sid, requested + wait, {"reason": reason})
        return
    matched = requested + timedelta(seconds=max(5.0, rng.lognormvariate(4.0, 0.8)))
    emit("matched", sid, matched, {"tutor_id": f"tut-{rng.randint(1, 400):04d}"})
    if rng.random() < 0.03:
        emit("cancelled", sid, matched + timedelta(minutes=rng.randint(1, 5)),
             {"reason": "student_left"})  # fmt: skip
        return
    done = matched + timedelta(minutes=rng.randint(8, 50))
    outcome = rng.choice(["resolved", "resolved", "resolved", "partial", "unresolved"])
    emit("completed", sid, done, {"outcome": outcome})
    if rng.random() < 0.6:
        late = timedelta(minutes=rng.randint(1, 60 * 24 * 3))
        if done + late < survey_until:
            helped = rng.random() < 0.96
            rating = rng.choice([4, 5, 5, 5]) if helped else rng.randint(1, 3)
            emit("surveyed", sid, done + late, {"helped": helped, "rating": rating})


def _with_resends(
    events: list[dict[str, Any]], rng: random.Random, rate: float
) -> list[dict[str, Any]]:
    """Each event, and at `rate` an identical copy right after it (an emitter's resend)."""
    out: list[dict[str, Any]] = []
    for event in events:
        out.append(event)
        if rng.random() < rate:
            out.append(dict(event))
    return out
