"""Alert settings and rules without servers: the districts file, windows, and what a
dashboard key may see of an alert."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tutorledger.api.dashboard.alert_links import dashboard_links
from tutorledger.api.http.routes.alerts import COUNTS, _protect
from tutorledger.domain.district import parse_profiles
from tutorledger.projections.alerts import window
from tutorledger.projections.filters import Filters


def test_districts_file_sets_thresholds_and_target_and_rejects_bad_ones() -> None:
    profiles = parse_profiles(
        {"d": {"dosage_target_minutes": 90, "alerts": {"hotspot_lift": 3, "long_wait_days": 14}}},
        "America/New_York",
    )
    rules = profiles["d"].alerts
    assert (profiles["d"].dosage_target_minutes, rules.hotspot_lift, rules.long_wait_days) == (
        90, 3.0, 14)  # fmt: skip
    assert rules.hotspot_requests == 20 and rules.falling_use_drop == 0.3  # defaults kept
    for bad, word in (({"alerts": {"hotspot_lifts": 2}}, "hotspot_lifts"),
                      ({"alerts": {"falling_use_drop": 1.5}}, "falling_use_drop"),
                      ({"dosage_target_minutes": 0}, "dosage_target_minutes")):  # fmt: skip
        with pytest.raises(ValueError, match=word):
            parse_profiles({"d": bad}, "America/New_York")


def test_windows_end_at_at_and_never_start_before_1970() -> None:
    base = Filters("d", 10, "UTC", school_id="ignored-by-window-callers")
    f, span = window(base, date(2026, 11, 8), 7)
    assert span == (date(2026, 11, 2), date(2026, 11, 8)) == (f.date_from, f.date_to)
    assert f.as_of_position == 10
    _, early = window(base, date(1970, 1, 3), 28)
    assert early == (date(1970, 1, 1), date(1970, 1, 3))


def test_evidence_becomes_the_dashboard_view_of_the_same_figures() -> None:
    api = ["/v1/metrics/demand?district_id=d&school_id=s1&subject=geometry&from=2026-10-12"
           "&to=2026-11-08&as_of_position=7",
           "/v1/metrics/wait-times?district_id=d&from=2026-11-02&to=2026-11-08&group_by=school"
           "&as_of_position=7",
           "/v1/sessions/d/ses-1"]  # fmt: skip
    links = dashboard_links("d", api)
    assert [link.href for link in links] == [
        "/dashboard/d/drill?school_id=s1&subject=geometry&from=2026-10-12&to=2026-11-08"
        "&as_of_position=7",
        "/dashboard/d?from=2026-11-02&to=2026-11-08&as_of_position=7#waits",
    ]


@given(kind=st.sampled_from(sorted(COUNTS)), k=st.integers(1, 30),
       values=st.lists(st.integers(0, 40), min_size=2, max_size=2))  # fmt: skip
def test_a_small_count_is_withheld_with_what_derives_from_it(
    kind: str, k: int, values: list[int]
) -> None:
    counts = COUNTS[kind]
    figures: dict[str, Any] = {}
    for name, value in zip(counts, values * 2, strict=False):
        figures[name] = value
    for derived in {d for ds in counts.values() for d in ds}:
        figures[derived] = 1.5
    alert = {"kind": kind, "figures": dict(figures)}
    _protect(alert, k)
    small = {n for n in counts if 0 < figures[n] < k}
    shown = alert["figures"]
    assert bool(small) == bool(alert.get("suppressed"))
    for name in counts:
        assert (shown[name] is None) == (name in small)
    for name, derived in counts.items():
        for d in derived:
            if name in small:
                assert shown[d] is None
    if not small:
        assert shown == figures
