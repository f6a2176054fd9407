"""Dashboard rules without a server: sessions, redirects, filters in the URL, heat-map bands,
the vendored charting library and the colour contrast of every heat-map class."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from tutorledger.api.dashboard import grids
from tutorledger.api.dashboard.grouped import Period
from tutorledger.api.dashboard.marks import MARK, WITHHELD, marked
from tutorledger.api.dashboard.notes import partial_previous, rate_withheld, with_rates_withheld
from tutorledger.api.dashboard.pages import (
    HERE,
    ViewQuery,
    minutes,
    num,
    pct,
    pts_range,
    secs,
    signed,
)
from tutorledger.api.dashboard.session import Signer, safe_next, sign_in
from tutorledger.domain.errors import Forbidden, Unauthorized
from tutorledger.infra.keys import KeySpec, KeyStore, key_digest

KEY = "dashboard-unit-key-00000000"
STATIC = HERE / "static"


def signer(max_age: int = 3600) -> Signer:
    return Signer(URLSafeTimedSerializer("s3cret", salt="t"), max_age)


def test_a_session_names_the_key_digest_and_cannot_be_forged() -> None:
    token = signer().issue(key_digest(KEY))
    assert KEY not in token
    session = signer().session(token)
    assert session is not None and session.digest == key_digest(KEY)
    assert signer().session(token[:-2] + "xx") is None
    other = Signer(URLSafeTimedSerializer("other", salt="t"))
    assert other.session(token) is None
    assert signer(max_age=-1).session(token) is None  # expired


def test_each_sign_in_is_its_own_session_and_old_cookies_without_one_are_refused() -> None:
    first, second = (signer().session(signer().issue(key_digest(KEY))) for _ in range(2))
    assert first is not None and second is not None
    assert first.session_id != second.session_id and len(first.session_id) >= 24
    assert first.expires_at > datetime.now(UTC)
    # Signed with the right secret, but from before sessions had ids: sign in again.
    legacy = URLSafeTimedSerializer("s3cret", salt="t").dumps({"k": key_digest(KEY)})
    assert signer().session(legacy) is None


def test_sign_in_needs_a_known_key_that_may_read_figures() -> None:
    keys = KeyStore(
        [
            KeySpec(key=KEY, role="dashboard", districts=["d"]),
            KeySpec(key="emitter-unit-key-000000000", role="emitter", districts=["d"]),
        ]
    )
    digest, principal = sign_in(keys, f" {KEY}\n")
    assert digest == hashlib.sha256(KEY.encode()).hexdigest() and principal.covers("d")
    assert keys.by_digest(digest) == principal
    with pytest.raises(Unauthorized):
        sign_in(keys, "not-a-key-0000000000000")
    with pytest.raises(Unauthorized):
        sign_in(None, KEY)
    with pytest.raises(Forbidden):
        sign_in(keys, "emitter-unit-key-000000000")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/dashboard/d?grade=3", "/dashboard/d?grade=3"),
        ("//evil.example/dashboard/", "/"),
        ("https://evil.example/", "/"),
        ("/dashboard//evil.example", "/"),
        ("/dashboard/\\evil", "/"),
        ("/v1/admin/rebuild", "/"),
        (None, "/"),
    ],
)
def test_after_sign_in_only_dashboard_pages_of_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_blank_form_fields_are_unset_and_bad_ones_fail() -> None:
    q = ViewQuery.model_validate({"school_id": "", "grade": "4", "from": "2026-09-01", "to": ""})
    assert q.grade == 4 and q.school_id is None and q.date_from == date(2026, 9, 1)
    assert q.query() == "?grade=4&from=2026-09-01"
    assert q.query(grade=None, as_of_position=9) == "?from=2026-09-01&as_of_position=9"
    for bad in ({"grade": "13"}, {"school_id": "a b"}, {"from": "soon"}, {"as_of_position": "-1"}):
        with pytest.raises(ValueError):
            ViewQuery.model_validate(bad)


ids = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)


@given(
    school=st.none() | ids,
    subject=st.none() | st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
    grade=st.none() | st.integers(0, 12),
    start=st.none() | st.dates(),
    position=st.none() | st.integers(0, 2**40),
)
def test_a_view_survives_its_own_url(
    school: str | None,
    subject: str | None,
    grade: int | None,
    start: date | None,
    position: int | None,
) -> None:
    """What the page puts in a link (reproduce, drill-down, filters) reads back the same."""
    from urllib.parse import parse_qsl

    q = ViewQuery(school_id=school, subject=subject, grade=grade, date_from=start,
                  as_of_position=position)  # fmt: skip
    assert ViewQuery.model_validate(dict(parse_qsl(q.query()[1:]))) == q


def test_lift_bands_and_hotspots() -> None:
    assert [grids.lift_band(v) for v in (None, 0.1, 0.5, 1.0, 1.25, 2.0, 2.99, 3.0)] == [
        None, 0, 1, 2, 3, 4, 4, 5,
    ]  # fmt: skip
    assert grids.is_hotspot({"lift": 2.0, "requests": 20})
    assert not grids.is_hotspot({"lift": 5.0, "requests": 19})
    assert not grids.is_hotspot({"lift": None, "requests": 500})
    rows = [
        {"school_id": "b", "subject": "geometry", "requests": 40, "lift": 3.5},
        {"school_id": "a", "subject": "algebra", "requests": 60, "lift": 1.0},
        {"school_id": "b", "subject": "algebra", "requests": 10, "lift": 0.4},
    ]
    grid = grids.demand_grid(rows)
    assert grid.schools == ["a", "b"] and grid.subjects == ["algebra", "geometry"]
    assert [(h["school_id"], h["subject"]) for h in grid.hotspots] == [("b", "geometry")]
    assert grid.cell("a", "geometry") is None


@given(peak=st.integers(1, 10_000), data=st.data())
def test_load_bands_grow_with_requests(peak: int, data: st.DataObject) -> None:
    low = data.draw(st.integers(0, peak))
    high = data.draw(st.integers(low, peak))
    assert grids.load_band(0, peak) == 0
    assert grids.load_band(peak, peak) == grids.LOAD_BANDS
    assert 0 <= grids.load_band(low, peak) <= grids.load_band(high, peak) <= grids.LOAD_BANDS
    assert grids.load_band(high, peak) >= 1 or high == 0


def test_number_formats() -> None:
    assert (pct(None), pct(0.8093), secs(95.4), secs(42.0)) == ("—", "80.9%", "1 min 35 s", "42 s")
    assert (minutes(138176.0), minutes(7.25), minutes(None)) == ("138,176 min", "7.2 min", "—")
    assert (signed(1234, "count"), signed(-0.021, "rate"), signed(0, "count")) == (
        "+1,234", "−2.1 pts", "±0",
    )  # fmt: skip
    assert (signed(-0.0004, "rate"), signed(0.0004, "rate"), signed(-0.4, "count")) == (
        "±0.0 pts", "±0.0 pts", "±0",
    )  # a change that rounds to zero has no direction  # fmt: skip
    assert {pct(WITHHELD), num(WITHHELD), secs(WITHHELD), minutes(WITHHELD)} == {MARK}
    assert MARK != num(None)


def test_a_range_bound_that_rounds_to_zero_reads_0_0() -> None:
    assert pts_range(-0.056, 0.0001) == "−5.6 to 0.0 pts"
    assert pts_range(-0.0004, 0.022) == "0.0 to +2.2 pts"
    assert pts_range(-0.018, 0.018) == "−1.8 to +1.8 pts"
    assert signed(0.0001, "rate") == "±0.0 pts"  # a lone change keeps its "no direction" mark


def test_a_previous_period_before_the_first_request_is_told_how_much_could_hold_data() -> None:
    first = date(2026, 9, 7)
    before = Period("previous", date(2026, 8, 24), date(2026, 11, 29))
    told = partial_previous(before, first)
    assert told is not None and (told.days_with_data, told.days) == (84, 98)
    gone = partial_previous(Period("previous", date(2026, 8, 1), date(2026, 8, 31)), first)
    assert gone is not None and gone.days_with_data == 0
    assert partial_previous(Period("previous", first, date(2026, 9, 20)), first) is None
    assert partial_previous(None, first) is None and partial_previous(before, None) is None


def test_a_withheld_helped_rate_says_why_from_what_the_row_shows() -> None:
    shown_count = {"surveys": 561, "helped": WITHHELD, "helped_rate": WITHHELD}
    assert "how many of these surveys said the session helped" in (
        rate_withheld(shown_count, 10) or ""
    )
    closed = with_rates_withheld({"surveys": WITHHELD, "helped": WITHHELD, "helped_rate": None})
    assert closed["helped_rate"] is WITHHELD  # never "—" beside a withheld count
    assert "fewer than 10" in (rate_withheld(closed, 10) or "")
    assert rate_withheld({"surveys": 0, "helped_rate": None}, 10) is None
    assert rate_withheld({"surveys": 40, "helped_rate": 0.9}, 10) is None
    assert rate_withheld(None, 10) is None


def test_withheld_is_what_the_exact_answer_has_and_the_shown_one_lacks() -> None:
    exact = {"n": 3, "rate": None, "rows": [{"a": 4, "b": 0}, {"a": None, "b": 12}]}
    shown = {"n": None, "rate": None, "rows": [{"a": None, "b": 0}, {"a": None, "b": 12}]}
    assert marked(exact, shown) == {
        "n": WITHHELD, "rate": None, "rows": [{"a": WITHHELD, "b": 0}, {"a": None, "b": 12}],
    }  # fmt: skip


def test_the_vendored_chart_library_is_the_recorded_release() -> None:
    folder = STATIC / "vendor" / "chartjs"
    record = json.loads((folder / "VENDOR.json").read_text())
    assert (folder / record["licence_file"]).read_text().startswith("The MIT License")
    for name, digest in record["files"].items():
        data = (folder / name).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, name
        assert f"Chart.js v{record['version']}".encode() in data[:200]


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_every_heat_map_class_meets_wcag_aa_contrast() -> None:
    css = (STATIC / "dashboard.css").read_text()
    pairs = re.findall(
        r"\.((?:lift|load)-\w+) \{ background: (#[0-9a-f]{6}); color: (#[0-9a-f]{6}); \}", css
    )
    assert len(pairs) == 13
    # Page text: header, links, muted text on white and on the filter panel, table heads.
    pairs += [("header", "#16324f", "#ffffff"), ("link", "#ffffff", "#0b4f8a"),
              ("muted", "#ffffff", "#4a4a4a"), ("panel", "#f7f7f7", "#4a4a4a"),
              ("thead", "#eef0f2", "#1a1a1a")]  # fmt: skip
    for name, background, text in pairs:
        light, dark = sorted((_luminance(background), _luminance(text)), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, name


def test_templates_reference_only_packaged_assets() -> None:
    """No page names an asset from elsewhere (closed school networks have no internet)."""
    for template in Path(HERE / "templates").glob("*.html"):
        text = template.read_text()
        for url in re.findall(r'(?:src|href)="([^"{]+)"', text):
            assert url.startswith(("/", "#", "data:")), (template.name, url)
        for asset in re.findall(r'"/static/dashboard/([^"]+)"', text):
            assert (STATIC / asset).is_file(), asset
