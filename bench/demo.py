"""The demo district as a program lead finds it: two providers and a roster with groups.

`bench.district.generate` gives the on-demand sessions (its output is pinned by tests and
benchmarks, so it is left as it is). On top of it, from the same seed, this adds:

- an in-house high-dosage programme (`IN_HOUSE`): a share of the students of some schools
  and grades, each with a fixed tutor and a fixed slot three school days a week, sessions of
  30-45 minutes (a few shorter), a few absences; the on-demand sessions are the vendor's
  (`VENDOR`). Each event is recorded with the provenance of the provider's emitter key, as
  `POST /v1/events` records it (`domain.provenance.by_key`);
- a roster of every student with programme flags and demographics (OneRoster `users.csv`
  with `metadata.*` columns and `demographics.csv`), imported through the same importer as
  `tutorledger import-groups`. Memberships are drawn after the sessions, with odds that
  depend on how much each student used tutoring, so the equity gaps are there to be found:
  English learners use it less, students on an IEP and economically disadvantaged ones are
  over-represented in the high-dosage programme.

Deterministic for a spec: the same seed gives the same events, key ids and roster, so a
re-run is recognised as duplicates and an unchanged roster is not recorded again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from tutorledger.bench.district import District, DistrictSpec, generate
from tutorledger.domain.provenance import Provenance, by_key

VENDOR = "on-demand-vendor"  # the on-demand homework-help vendor: every generated session
IN_HOUSE = "in-house-high-dosage"  # the district's own high-dosage programme
PROGRAMME_SCHOOL_EVERY = 4  # schools sch-02, sch-06, …: the programme's sites
PROGRAMME_GRADES = range(3, 9)  # grades 3-8
PROGRAMME_SHARE = 0.2  # of the students of those schools and grades
SLOTS = ((0, 2, 4), (1, 2, 3), (0, 1, 3))  # weekday patterns: Mon/Wed/Fri, Tue/Wed/Thu, …
TIMES = (9 * 60, 10 * 60 + 15, 11 * 60 + 30, 13 * 60)  # a tutor's four sessions of a day
ABSENT, CANCELLED, SHORT = 0.06, 0.04, 0.05  # no session, cancelled, under 30 minutes

# Group code → (share of the roster, odds weight by usage tier). Tiers: no request, requests
# in one or two ISO weeks, in three or more (regular use), in the high-dosage programme.
# The weights are relative: the drawn share stays close to the first number.
GROUPS: dict[str, tuple[float, tuple[float, float, float, float]]] = {
    "econ_disadv": (0.60, (1.0, 1.0, 1.0, 1.35)),
    "ell": (0.15, (2.2, 1.3, 0.85, 0.9)),
    "sped": (0.12, (1.0, 1.0, 1.0, 1.8)),
    "s504": (0.03, (1.0, 1.0, 1.0, 1.0)),
    "gifted": (0.08, (0.7, 1.0, 1.05, 0.3)),
    "homeless": (0.03, (1.8, 1.2, 0.9, 1.0)),
}
METADATA = {"econ_disadv": "economicallyDisadvantaged", "ell": "englishLearner", "sped": "iep",
            "s504": "section504", "gifted": "gifted", "homeless": "homeless"}  # fmt: skip
RACES = (("blackOrAfricanAmerican", 0.55), ("white", 0.20), ("asian", 0.05),
         ("demographicRaceTwoOrMoreRaces", 0.06), ("americanIndianOrAlaskaNative", 0.01),
         ("nativeHawaiianOrOtherPacificIslander", 0.01), ("", 0.12))  # fmt: skip
HISPANIC = 0.18
SEXES = (("female", 0.49), ("male", 0.503), ("other", 0.002), ("", 0.005))


@dataclass
class Demo:
    """The district's schools, its events (time order, resends included) with each
    session's provider, the providers' key ids and the roster bundle (zip bytes)."""

    district: District
    events: list[dict[str, Any]]
    provider_of: dict[str, str]  # session id → provider
    key_ids: dict[str, str]  # provider → its emitter key's id
    roster: bytes
    as_of: date
    programme_students: int = 0
    memberships: dict[str, int] = field(default_factory=dict)

    def provenance(self, provider: str) -> Provenance:
        return by_key(self.key_ids[provider], provider)

    def batches(self, size: int = 1000) -> Iterator[tuple[Provenance, list[dict[str, Any]]]]:
        """The events in runs of at most `size`, each run split by provider (one emitter
        posts only its own), each part in time order."""
        for start in range(0, len(self.events), size):
            parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for event in self.events[start : start + size]:
                parts[self.provider_of[event["session_id"]]].append(event)
            for provider, part in parts.items():
                yield self.provenance(provider), part


def key_id(district_id: str, provider: str) -> str:
    """The id of the provider's demo emitter key: 16 hex digits, as a key's id is, from a
    name (no key is made: the demo records directly, as the API would for that key)."""
    return hashlib.sha256(f"tutorledger-demo/{district_id}/{provider}".encode()).hexdigest()[:16]


def generate_demo(spec: DistrictSpec) -> Demo:
    """The on-demand district, the programme's sessions and the roster, from one seed."""
    district = generate(spec)
    rng = random.Random(f"{spec.seed}/demo")  # its own stream: `generate` stays as it was
    provider_of = {e["session_id"]: VENDOR for e in district.events}
    programme = _Programme(spec, rng, district)
    extra = programme.events()
    provider_of.update(dict.fromkeys((e["session_id"] for e in extra), IN_HOUSE))
    events = _merge(district.events, extra)
    tiers = _tiers(events, spec, set(programme.students))
    members = _memberships(rng, tiers)
    as_of = spec.start - timedelta(days=7)
    return Demo(
        district,
        events,
        provider_of,
        {p: key_id(spec.district_id, p) for p in (VENDOR, IN_HOUSE)},
        _bundle(rng, list(tiers), members),
        as_of,
        len(programme.students),
        {code: len(ids) for code, ids in members.items()},
    )


def _merge(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both lists are in time order: one list in time order (a's first at equal times)."""
    keyed = [(datetime.fromisoformat(e["occurred_at"]), 0, i) for i, e in enumerate(a)]
    keyed += [(datetime.fromisoformat(e["occurred_at"]), 1, i) for i, e in enumerate(b)]
    keyed.sort()
    return [(a if side == 0 else b)[i] for _, side, i in keyed]


class _Programme:
    """The in-house programme's sessions: fixed slot, fixed tutor, three days a week."""

    def __init__(self, spec: DistrictSpec, rng: random.Random, district: District) -> None:
        self.spec, self.rng, self.tz = spec, rng, ZoneInfo(spec.tz)
        self.ns = uuid5(UUID(int=0), f"{spec.district_id}/{spec.seed}/{IN_HOUSE}")
        sites = {s["school_id"] for i, s in enumerate(district.schools)
                 if i % PROGRAMME_SCHOOL_EVERY == 1}  # fmt: skip
        seen: dict[str, tuple[str, int]] = {}
        for e in district.events:
            p = e["payload"]
            if e["type"] == "session.requested" and p["student_id"] not in seen:
                seen[p["student_id"]] = (p["school_id"], p["grade"])
        eligible = sorted(s for s, (school, grade) in seen.items()
                          if school in sites and grade in PROGRAMME_GRADES)  # fmt: skip
        self.students = {s: seen[s] for s in eligible if rng.random() < PROGRAMME_SHARE}

    def events(self) -> list[dict[str, Any]]:
        out: list[tuple[datetime, int, dict[str, Any]]] = []
        taken: dict[str, int] = defaultdict(int)  # students placed per school
        for student, (school, grade) in sorted(self.students.items(), key=lambda s: s[1][0]):
            slot = SLOTS[self.rng.randrange(len(SLOTS))]
            k = taken[school]
            taken[school] += 1
            # A tutor sees four students of one school, each at its own time: never two at once.
            tutor = f"hdt-{school}-{k // len(TIMES) + 1:02d}"
            minute = TIMES[k % len(TIMES)]
            subject = "reading" if grade < 6 else "algebra"
            for day in range(self.spec.days):
                when = self.spec.start + timedelta(days=day)
                if when.weekday() in slot and self.rng.random() >= ABSENT:
                    self._session(out, student, school, grade, subject, tutor, when, minute)
        out.sort(key=lambda r: (r[0], r[1]))
        return [e for _, _, e in out]

    def _session(self, out: list[tuple[datetime, int, dict[str, Any]]], student: str,
                 school: str, grade: int, subject: str, tutor: str, day: date,
                 minute: int) -> None:  # fmt: skip
        rng = self.rng
        sid = f"ses-{uuid5(self.ns, f'{student}/{day.isoformat()}').hex[:16]}"
        at = datetime(day.year, day.month, day.day, tzinfo=self.tz) + timedelta(
            minutes=minute - rng.randint(0, 4), seconds=rng.randint(0, 59)
        )

        def emit(kind: str, when: datetime, payload: dict[str, Any]) -> None:
            out.append((when, len(out), {
                "event_id": str(uuid5(self.ns, f"{sid}/{kind}")),
                "type": f"session.{kind}", "schema_version": 1,
                "district_id": self.spec.district_id, "session_id": sid,
                "occurred_at": when.isoformat(), "payload": payload,
            }))  # fmt: skip

        emit("requested", at, {"school_id": school, "student_id": student, "grade": grade,
                               "subject": subject})  # fmt: skip
        if rng.random() < CANCELLED:
            emit(
                "cancelled", at + timedelta(minutes=rng.randint(3, 10)), {"reason": "student_left"}
            )
            return
        matched = at + timedelta(seconds=rng.randint(20, 240))
        emit("matched", matched, {"tutor_id": tutor})
        length = rng.randint(18, 29) if rng.random() < SHORT else rng.randint(30, 45)
        done = matched + timedelta(minutes=length, seconds=rng.randint(0, 59))
        emit("completed", done, {"outcome": rng.choice(["resolved", "resolved", "partial"])})
        if rng.random() < 0.25:
            helped = rng.random() < 0.93
            emit("surveyed", done + timedelta(minutes=rng.randint(1, 30)),
                 {"helped": helped, "rating": rng.choice([4, 5, 5]) if helped else 2})  # fmt: skip


def _tiers(
    events: Sequence[dict[str, Any]], spec: DistrictSpec, programme: set[str]
) -> dict[str, int]:
    """Every student of the roster (all `generate` made: stu-000001…) → usage tier: 0 no
    request, 1 requests in one or two ISO weeks, 2 in three or more, 3 in the programme."""
    tz = ZoneInfo(spec.tz)
    weeks: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for e in events:
        if e["type"] == "session.requested":
            local = datetime.fromisoformat(e["occurred_at"]).astimezone(tz).date()
            weeks[e["payload"]["student_id"]].add(local.isocalendar()[:2])
    tiers: dict[str, int] = {}
    for n in range(spec.students):
        student = f"stu-{n + 1:06d}"
        active = len(weeks.get(student, ()))
        tiers[student] = 3 if student in programme else 0 if not active else 1 if active < 3 else 2
    return tiers


def _memberships(rng: random.Random, tiers: dict[str, int]) -> dict[str, list[str]]:
    """Each group's members: P(member | tier) = share × weight[tier] ÷ the mean weight over
    the roster, so the group keeps about its share while its usage differs."""
    counts = [0, 0, 0, 0]
    for tier in tiers.values():
        counts[tier] += 1
    total = max(1, len(tiers))
    members: dict[str, list[str]] = {}
    for code, (share, weights) in GROUPS.items():
        mean = sum(w * c for w, c in zip(weights, counts, strict=True)) / total
        odds = [min(0.95, share * w / mean) for w in weights]
        members[code] = [s for s, tier in tiers.items() if rng.random() < odds[tier]]
    return members


def _pick(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    names = [name for name, _ in options]
    return rng.choices(names, [weight for _, weight in options])[0]


def _bundle(rng: random.Random, students: list[str], members: dict[str, list[str]]) -> bytes:
    """The roster as a OneRoster zip: users.csv with `metadata.*` programme flags and
    demographics.csv with sex and race/ethnicity flags (no names, no birth dates)."""
    flags = {code: set(ids) for code, ids in members.items()}
    users, demographics = io.StringIO(), io.StringIO()
    u = csv.writer(users, lineterminator="\n")
    u.writerow(["sourcedId", "status", "role", *(f"metadata.{m}" for m in METADATA.values())])
    d = csv.writer(demographics, lineterminator="\n")
    races = [r for r, _ in RACES if r]
    d.writerow(["sourcedId", "status", "sex", *races, "hispanicOrLatinoEthnicity"])
    for student in students:
        u.writerow([student, "active", "student",
                    *("true" if student in flags[c] else "false" for c in METADATA)])  # fmt: skip
        race = _pick(rng, RACES)
        hispanic = rng.random() < HISPANIC
        d.writerow([student, "active", _pick(rng, SEXES),
                    *("true" if r == race else "false" for r in races),
                    "true" if hispanic else "false"])  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (("users.csv", users), ("demographics.csv", demographics)):
            # a fixed date: the same seed gives the same bytes
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            archive.writestr(info, text.getvalue(), zipfile.ZIP_DEFLATED)
    return out.getvalue()
