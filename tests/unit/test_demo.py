"""The demo district's providers and roster (bench/demo.py): the on-demand sessions are
`generate`'s unchanged, the in-house programme's are regular (three a week, 30+ minutes),
every session has one provider and is posted in its provider's batches, the roster parses
through the import-groups importer with plausible shares and usage that differs by group,
and the same seed gives the same demo."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tutorledger.bench.demo import GROUPS, IN_HOUSE, VENDOR, Demo, generate_demo
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.infra.importers.student_groups import parse_attributes

SPEC = DistrictSpec(students=1200, schools=6, days=21, seed=11)
TZ = ZoneInfo(SPEC.tz)


@pytest.fixture(scope="module")
def demo() -> Demo:
    return generate_demo(SPEC)


def test_the_same_seed_gives_the_same_demo_and_another_seed_another(demo: Demo) -> None:
    again = generate_demo(SPEC)
    assert again.events == demo.events and again.roster == demo.roster
    assert again.key_ids == demo.key_ids
    other = generate_demo(DistrictSpec(students=1200, schools=6, days=21, seed=12))
    assert other.roster != demo.roster


def test_the_vendor_has_the_generated_district_unchanged(demo: Demo) -> None:
    vendor = [e for e in demo.events if demo.provider_of[e["session_id"]] == VENDOR]
    assert vendor == generate(SPEC).events
    providers = Counter(demo.provider_of.values())
    assert providers[VENDOR] > 2 * providers[IN_HOUSE] > 0


def test_batches_hold_one_provider_each_and_every_event_once(demo: Demo) -> None:
    seen: list[str] = []
    for provenance, batch in demo.batches(500):
        assert 0 < len(batch) <= 500
        assert {demo.provider_of[e["session_id"]] for e in batch} == {provenance.provider}
        assert provenance.via == "api" and provenance.key_id == demo.key_ids[provenance.provider]
        seen += [e["event_id"] for e in batch]
    assert Counter(seen) == Counter(e["event_id"] for e in demo.events)
    order: dict[str, list[datetime]] = defaultdict(list)
    for _, batch in demo.batches(500):
        for e in batch:
            order[e["session_id"]].append(datetime.fromisoformat(e["occurred_at"]))
    assert all(times == sorted(times) for times in order.values())  # a session's own order kept


def test_the_programme_is_three_sessions_a_week_of_thirty_minutes_or_more(demo: Demo) -> None:
    by_session: dict[str, dict[str, datetime]] = defaultdict(dict)
    student_of: dict[str, str] = {}
    for e in demo.events:
        if demo.provider_of[e["session_id"]] == IN_HOUSE:
            by_session[e["session_id"]][e["type"]] = datetime.fromisoformat(e["occurred_at"])
            if e["type"] == "session.requested":
                student_of[e["session_id"]] = e["payload"]["student_id"]
    weeks: Counter[tuple[str, tuple[int, int]]] = Counter()
    lengths = []
    for sid, times in by_session.items():
        day = times["session.requested"].astimezone(TZ)
        assert day.weekday() < 5 and 8 <= day.hour < 15  # school days, in the school day
        weeks[(student_of[sid], day.isocalendar()[:2])] += 1
        if "session.completed" in times:
            lengths.append((times["session.completed"] - times["session.matched"]).seconds / 60)
    assert max(weeks.values()) == 3
    assert sum(weeks.values()) / len(weeks) > 2.6  # three a week, a few absences
    assert sum(length >= 30 for length in lengths) / len(lengths) > 0.9


def test_the_roster_parses_with_plausible_shares_and_usage_differs_by_group(demo: Demo) -> None:
    attrs = parse_attributes(_unzipped(demo.roster))
    assert attrs.students == [f"stu-{n + 1:06d}" for n in range(SPEC.students)]
    size = len(attrs.students)
    for code, (share, _) in GROUPS.items():
        assert abs(len(attrs.members[code]) / size - share) < 0.04 + share / 3, code
    assert abs(len(attrs.members["female"]) / size - 0.49) < 0.05
    users = {e["payload"]["student_id"] for e in demo.events if e["type"] == "session.requested"}
    ell = set(attrs.members["ell"])
    reach_ell = len(ell & users) / len(ell)
    reach_rest = len(users - ell) / (size - len(ell))
    assert reach_ell < reach_rest - 0.05  # English learners use it less


def _unzipped(data: bytes) -> dict[str, bytes]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_no_tutor_is_in_two_sessions_at_once(demo: Demo) -> None:
    """The tutor-overlap alert flags a tutor in two sessions at once: neither the
    programme's tutors (four students each, one time each) nor the vendor's (booked free
    ones first) may raise it on the demo district."""
    spans: dict[str, dict[str, datetime]] = defaultdict(dict)
    tutor_of: dict[str, tuple[str, str]] = {}
    for e in demo.events:
        spans[e["session_id"]][e["type"]] = datetime.fromisoformat(e["occurred_at"])
        if e["type"] == "session.matched":
            tutor_of[e["session_id"]] = (
                demo.provider_of[e["session_id"]],
                e["payload"]["tutor_id"],
            )
    by_tutor: dict[tuple[str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
    for sid, times in spans.items():
        if "session.completed" in times:
            by_tutor[tutor_of[sid]].append((times["session.matched"], times["session.completed"]))
    assert {provider for provider, _ in by_tutor} == {IN_HOUSE, VENDOR}
    for sessions in by_tutor.values():
        sessions.sort()
        assert all(a[1] <= b[0] for a, b in zip(sessions, sessions[1:], strict=False))
