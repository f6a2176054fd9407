"""The synthetic district generator: a seed always yields the same district (the demo relies
on it: loading twice gives duplicates, not a doubled district), and what it yields is a
valid ledger input: sessions open with a request, events come in time order, resends are
exact copies, session ids do not carry student ids, enrolment covers the students."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from tutorledger.bench.district import HOTSPOT_SUBJECT, District, DistrictSpec, generate

# The whole output for fixed specs, as hashed before `generate` was split into parts. A
# deliberate change to the generator changes these; an accidental one must not.
GOLDEN = {
    DistrictSpec(seed=1, students=300, schools=3, days=5): (
        3656, "ef58007f7463a7c85b46b736cb23f719471059a5fc91fb7a20aaeccb39a433ce"),
    DistrictSpec(seed=3, students=50, schools=12, tz="America/Chicago", start=date(2027, 1, 4)): (
        680, "7743bd77ec83c845f9688c8ff90dc9aac60f0df84e4455948a192d4f8a6193d0"),
}  # fmt: skip


def digest(district: District) -> str:
    blob = json.dumps({"schools": district.schools, "events": district.events,
                       "hot": district.hotspot_school}, sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()


def test_fixed_seeds_give_the_same_district_as_before() -> None:
    for spec, (events, expected) in GOLDEN.items():
        district = generate(spec)
        assert (len(district.events), digest(district)) == (events, expected), spec


def test_another_seed_gives_another_district() -> None:
    spec = DistrictSpec(seed=1, students=120, days=5)
    assert digest(generate(spec)) == digest(generate(spec))
    assert digest(generate(DistrictSpec(seed=2, students=120, days=5))) != digest(generate(spec))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    students=st.integers(1, 80),
    schools=st.integers(1, 6),
    days=st.integers(1, 10),
    duplicate_rate=st.sampled_from([0.0, 0.05, 0.5]),
)
def test_a_generated_district_is_a_valid_ledger_input(
    seed: int, students: int, schools: int, days: int, duplicate_rate: float
) -> None:
    spec = DistrictSpec(seed=seed, students=students, schools=schools, days=days,
                        duplicate_rate=duplicate_rate)  # fmt: skip
    district = generate(spec)
    events = district.events
    assert [e["occurred_at"] for e in events] == sorted(e["occurred_at"] for e in events)
    first: dict[str, str] = {}
    by_id: dict[str, dict[str, object]] = {}
    for event in events:
        first.setdefault(event["session_id"], event["type"])
        assert by_id.setdefault(event["event_id"], event) == event, "a resend differs"
        assert event["payload"].get("student_id", "stu-") not in event["session_id"]
    assert set(first.values()) <= {"session.requested"}
    per_grade = Counter((e["payload"]["school_id"], str(e["payload"]["grade"]))
                        for e in by_id.values() if e["type"] == "session.requested")  # fmt: skip
    enrolment = {
        (s["school_id"], g): n for s in district.schools for g, n in s["enrollment"].items()
    }
    assert all(enrolment[key] > 0 for key in per_grade)
    assert len(district.schools) == schools
    if duplicate_rate == 0.0:
        assert len(by_id) == len(events)


def test_the_hotspot_school_asks_for_its_subject_most() -> None:
    district = generate(DistrictSpec(students=600, schools=4, days=10))
    asked = Counter(e["payload"]["subject"] for e in district.events
                    if e["type"] == "session.requested"
                    and e["payload"]["school_id"] == district.hotspot_school)  # fmt: skip
    assert asked.most_common(1)[0][0] == HOTSPOT_SUBJECT
