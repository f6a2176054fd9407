"""Provenance records and the overlap sweep, without servers: the record's shape, its way
through the published form and into a row, and the sweep against brute force."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from builders import at_minute
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tutorledger.domain.envelope import parse_envelope
from tutorledger.domain.provenance import Provenance, by_import, by_key
from tutorledger.domain.published import parse_published
from tutorledger.projections.overlap import Interval, audit, highest_concurrency
from tutorledger.projections.rows import COLUMNS, event_row

SHA = "ab" * 32


def test_records_omit_absent_fields() -> None:
    assert by_key("0123456789abcdef", None).record() == {
        "format": 1, "via": "api", "key_id": "0123456789abcdef"
    }  # fmt: skip
    assert by_import("tutorcom", SHA).record() == {
        "format": 1, "via": "import", "provider": "tutorcom", "source_sha256": SHA
    }  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [
        {"via": "api"},  # no key id
        {"via": "api", "key_id": "0123456789abcdef", "source_sha256": SHA},
        {"via": "import", "provider": "tutorcom"},  # no digest
        {"via": "import", "provider": "tutorcom", "source_sha256": SHA, "key_id": "00000000"},
        {"via": "api", "key_id": "0123456789abcdef", "provider": "has space"},
        {"via": "api", "key_id": "0123456789abcdef", "format": 2},
        {"via": "mail", "key_id": "0123456789abcdef"},
    ],
)
def test_incomplete_or_malformed_provenance_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Provenance(**fields)


def test_emitters_cannot_send_provenance() -> None:
    raw = at_minute("d", "s", "matched", 1, tutor_id="t-1")
    with pytest.raises(ValidationError):
        parse_envelope({**raw, "provenance": by_key("0123456789abcdef", "x").record()})


def test_the_published_form_carries_provenance_into_the_row() -> None:
    raw = at_minute("d", "s", "matched", 1, tutor_id="t-1")
    record = by_import("tutorcom", SHA).record()
    doc = {**parse_envelope(raw).canonical(), "provenance": record}
    published = parse_published(doc)
    assert published["provenance"] == record
    row = dict(zip(COLUMNS, event_row(7, published), strict=True))
    assert (row["provider"], row["key_id"], row["source_sha256"]) == ("tutorcom", "", SHA)
    legacy_row = event_row(8, parse_published(doc | {"provenance": None}))
    legacy = dict(zip(COLUMNS, legacy_row, strict=True))
    assert (legacy["provider"], legacy["key_id"], legacy["source_sha256"]) == ("", "", "")
    with pytest.raises(ValidationError):  # a malformed record is dead-lettered, not projected
        parse_published({**doc, "provenance": {"via": "api"}})


# -- the sweep against brute force -------------------------------------------------------


def brute(found: list[Interval]) -> list[tuple[str, str, int, int, int]]:
    out = []
    for key in sorted({(i.provider, i.tutor_id) for i in found}):
        group = [i for i in found if (i.provider, i.tutor_id) == key]
        hit = {
            a.session_id
            for a in group
            for b in group
            if a is not b and a.start_us < b.end_us and b.start_us < a.end_us
        }
        most = max(sum(b.start_us <= a.start_us < b.end_us for b in group) for a in group)
        out.append((*key, len(group), len(hit), most))
    return out


intervals = st.lists(
    st.tuples(
        st.sampled_from(["p", "q"]),
        st.sampled_from(["t1", "t2", "t3"]),
        st.integers(0, 40),
        st.integers(0, 12),
    ),
    max_size=30,
).map(
    lambda rows: [
        Interval(p, t, f"s{n}", start, start + length, date(2026, 3, 2))
        for n, (p, t, start, length) in enumerate(rows)
    ]
)


@given(intervals)
def test_the_sweep_equals_brute_force(found: list[Interval]) -> None:
    got = [
        (t.provider, t.tutor_id, t.sessions, t.overlapping, t.highest_concurrency)
        for t in audit(found)
    ]
    assert got == brute(found)


def test_back_to_back_is_not_concurrent() -> None:
    day = date(2026, 3, 2)
    a = Interval("p", "t", "a", 0, 10, day)
    b = Interval("p", "t", "b", 10, 20, day)
    assert highest_concurrency([a, b]) == 1
    assert audit([a, b])[0].overlapping == 0
    c = Interval("p", "t", "c", 9, 11, day)
    assert highest_concurrency([a, b, c]) == 2 and audit([a, b, c])[0].overlapping == 3
