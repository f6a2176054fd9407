"""A realistic synthetic district: schools with enrolment, students, sessions with their lifecycle.

Deterministic for a seed (event ids are derived from it), so loading the same district
twice yields duplicates the ledger recognises rather than a doubled district.
"""

from __future__ import annotations

import random
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


def generate(spec: DistrictSpec) -> District:
    """Build the district; events are sorted by time, with a few duplicate resends."""
    rng = random.Random(spec.seed)
    tz = ZoneInfo(spec.tz)
    ns = uuid5(UUID(int=0), f"{spec.district_id}/{spec.seed}")
    district = District(spec)
    students = []
    per_grade: dict[tuple[str, int], int] = {}
    for i in range(spec.schools):
        district.schools.append({"school_id": f"sch-{i + 1:02d}", "name": f"School {i + 1}"})
    for n in range(spec.students):
        school = district.schools[n % spec.schools]["school_id"]
        grade = rng.randint(0, 12)
        students.append((f"stu-{n + 1:06d}", school, grade))
        per_grade[(school, grade)] = per_grade.get((school, grade), 0) + 1
    for school in district.schools:
        school["enrollment"] = {
            str(g): round(per_grade.get((school["school_id"], g), 0) / 0.9) for g in range(13)
        }
        school["as_of"] = spec.start - timedelta(days=7)
    hotspot = district.hotspot_school
    names, weights = zip(*SUBJECTS, strict=True)
    raw: list[tuple[datetime, int, dict[str, Any]]] = []
    counter = 0

    def emit(kind: str, session: str, at: datetime, payload: dict[str, Any]) -> None:
        nonlocal counter
        counter += 1
        raw.append((at, counter, {
            "event_id": str(uuid5(ns, f"{session}/{kind}")),
            "type": f"session.{kind}", "schema_version": 1,
            "district_id": spec.district_id, "session_id": session,
            "occurred_at": at.isoformat(), "payload": payload,
        }))  # fmt: skip

    end = _local(spec.start + timedelta(days=spec.days), 0, tz)
    for student_id, school, grade in students:
        roll = rng.random()
        sessions = 0 if roll < 0.1 else 1 if roll < 0.4 else rng.randint(2, 9)
        for k in range(sessions):
            day = spec.start + timedelta(days=rng.randrange(spec.days))
            requested = _local(day, _request_minute(rng, day.weekday()), tz)
            requested += timedelta(
                seconds=rng.randint(0, 59), microseconds=rng.randint(0, 999) * 1000
            )
            hot = school == hotspot and rng.random() < 0.5
            subject = HOTSPOT_SUBJECT if hot else rng.choices(names, weights)[0]
            # Session ids must not embed the student id: they are stored in clear and would
            # outlive an erasure (the id itself is sealed).
            sid = f"ses-{uuid5(ns, f'{student_id}/{k}').hex[:16]}"
            payload: dict[str, Any] = {"school_id": school, "student_id": student_id,
                                       "grade": grade, "subject": subject}  # fmt: skip
            if rng.random() < 0.2:
                payload["topic"] = f"{subject} unit {rng.randint(1, 9)}"
            emit("requested", sid, requested, payload)
            fate = rng.random()
            if fate < 0.03:
                continue  # still waiting: never matched
            if fate < 0.07:
                wait = timedelta(seconds=rng.randint(120, 900))
                reason = rng.choice(["no_tutor_available", "timeout", "student_left"])
                emit("cancelled", sid, requested + wait, {"reason": reason})
                continue
            matched = requested + timedelta(seconds=max(5.0, rng.lognormvariate(4.0, 0.8)))
            emit("matched", sid, matched, {"tutor_id": f"tut-{rng.randint(1, 400):04d}"})
            if rng.random() < 0.03:
                emit("cancelled", sid, matched + timedelta(minutes=rng.randint(1, 5)),
                     {"reason": "student_left"})  # fmt: skip
                continue
            done = matched + timedelta(minutes=rng.randint(8, 50))
            outcome = rng.choice(["resolved", "resolved", "resolved", "partial", "unresolved"])
            emit("completed", sid, done, {"outcome": outcome})
            if rng.random() < 0.6:
                late = timedelta(minutes=rng.randint(1, 60 * 24 * 3))
                if done + late < end + timedelta(days=3):
                    helped = rng.random() < 0.96
                    rating = rng.choice([4, 5, 5, 5]) if helped else rng.randint(1, 3)
                    emit("surveyed", sid, done + late, {"helped": helped, "rating": rating})
    raw.sort(key=lambda r: (r[0], r[1]))
    for _, _, event in raw:
        district.events.append(event)
        if rng.random() < spec.duplicate_rate:
            district.events.append(dict(event))
    return district
