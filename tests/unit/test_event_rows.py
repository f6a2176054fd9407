"""Event rows and the writer's two steps (plan, then apply), checked without a server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tutorledger.infra.clickhouse import LIST_BYTES, Encoded, in_parts, listed_size
from tutorledger.projections.read_models import FACT_COLUMNS, Tables
from tutorledger.projections.rows import COLUMNS, event_row, whole_seconds
from tutorledger.projections.writer import MissingRequest, ReadModelWriter, RequestCache

INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


def stored_text(at: datetime) -> str:
    """How the ledger stores an instant (pydantic's JSON of a UTC datetime)."""
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{at.microsecond:06d}Z" if at.microsecond else f"{text}Z"


@given(at=INSTANTS)
def test_whole_seconds_of_a_stored_instant_drop_only_the_microseconds(at: datetime) -> None:
    text = stored_text(at)
    parsed = datetime.fromisoformat(text)
    got = whole_seconds(text, parsed)
    assert got == parsed.replace(microsecond=0)
    assert got.tzinfo is parsed.tzinfo and got.microsecond == 0


@given(at=INSTANTS, offset=OFFSETS)
def test_whole_seconds_of_any_other_form_too(at: datetime, offset: timezone) -> None:
    text = at.astimezone(offset).isoformat()  # "+hh:mm" offsets, no fraction when whole
    parsed = datetime.fromisoformat(text)
    got = whole_seconds(text, parsed)
    assert got == parsed.replace(microsecond=0)
    assert got.utcoffset() == parsed.utcoffset() and got.microsecond == 0


def envelope(kind: str, at: str, payload: dict[str, Any], **extra: str) -> dict[str, Any]:
    return {"event_id": "e", "type": kind, "district_id": "d", "occurred_at": at,
            "payload": payload, **extra}  # fmt: skip


def test_event_row_flattens_each_kind_of_event() -> None:
    at = COLUMNS.index("occurred_at")
    requested = event_row(7, envelope("session.requested", "2026-09-07T12:00:16.731000Z",
        {"school_id": "s", "grade": 3, "subject": "math", "student_token": "t"},
        session_id="x"))  # fmt: skip
    assert requested[at] == datetime(2026, 9, 7, 12, 0, 16, tzinfo=UTC)
    assert requested[at + 1] == 731000
    assert requested[COLUMNS.index("student_id")] == "t"
    assert requested[COLUMNS.index("helped")] == -1
    school = event_row(8, envelope("school.updated", "2026-09-07T12:00:16+02:00",
        {"name": "North", "enrollment": {"10": 30, "9": 20}, "as_of": "2026-09-01"},
        school_id="s"))  # fmt: skip
    assert school[at] == datetime(2026, 9, 7, 10, 0, 16, tzinfo=UTC)
    assert school[COLUMNS.index("enrollment_grades")] == [9, 10]
    assert school[COLUMNS.index("enrollment_counts")] == [20, 30]
    assert school[COLUMNS.index("as_of")] == date(2026, 9, 1)
    assert school[COLUMNS.index("school_id")] == "s"
    assert requested[COLUMNS.index("as_of")] == date(1970, 1, 1)


class ListStore:
    """A ProjectionStore in lists: what the writer reads and inserts, in order."""

    kind = "memory"

    def __init__(self, answers: Sequence[tuple[Any, ...]] = ()) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []
        self.sent: list[tuple[str, list[tuple[Any, ...]]]] = []

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        self.calls.append("execute")
        return self.answers

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.send(self.encode(table, columns, rows))

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Encoded:
        return Encoded(table, tuple(columns), [tuple(r) for r in rows])

    def send(self, block: Encoded) -> None:
        assert isinstance(block.payload, list)
        self.calls.append(f"send {block.table}")
        self.sent.append((block.table, block.payload))

    def close(self) -> None: ...


def session_rows() -> list[tuple[Any, ...]]:
    requested = envelope(
        "session.requested",
        "2026-09-07T12:00:00.000001Z",
        {"school_id": "s", "grade": 3, "subject": "math", "student_token": "t"},
        session_id="x",
    )
    matched = envelope("session.matched", "2026-09-07T12:01:00.000002Z", {"tutor_id": "u"},
                       session_id="x")  # fmt: skip
    return [event_row(1, requested), event_row(2, matched)]


def test_apply_of_a_plan_inserts_what_write_does_facts_first_raw_last() -> None:
    rows = session_rows()
    written, planned = ListStore(), ListStore()
    ReadModelWriter(written).write(rows, tables=Tables(2), dedupe=False)
    writer = ReadModelWriter(planned)
    writer.apply(writer.plan(rows, tables=Tables(2), dedupe=False))
    assert written.sent == planned.sent
    assert [t for t, _ in planned.sent] == ["session_facts_g2", "ledger_events"]
    facts = dict(zip(FACT_COLUMNS, planned.sent[0][1][1], strict=True))
    assert facts["step"] == 1 and facts["wait_us"] == 60_000_001


def test_a_plan_that_must_read_the_store_settles_the_previous_insert_first() -> None:
    """A step whose request is not in the batch or the cache is looked up in the read model:
    an insert still running could hold it, so the plan waits for it first."""
    store = ListStore()
    settled: list[int] = []
    writer = ReadModelWriter(store, RequestCache(size=10))
    steps = session_rows()[1:]
    with pytest.raises(MissingRequest):
        writer.plan(steps, tables=Tables(2), dedupe=False, settle=lambda: settled.append(1))
    assert settled and store.calls == ["execute"]  # settled, then looked up
    settled.clear()
    writer.plan(session_rows(), tables=Tables(2), dedupe=False, settle=lambda: settled.append(1))
    assert not settled  # everything it needed was in the batch: nothing to wait for


@given(st.lists(st.text(max_size=300)))
def test_in_parts_keeps_every_value_in_order_and_each_part_within_the_limit(
    values: list[str],
) -> None:
    parts = list(in_parts(values))
    assert [v for part in parts for v in part] == values
    assert all(part for part in parts)
    for part in parts:
        assert len(part) == 1 or sum(map(listed_size, part)) <= LIST_BYTES


def test_in_parts_splits_a_list_too_long_for_one_query() -> None:
    positions = list(range(10**9, 10**9 + 50_000))  # about 700 KB rendered
    parts = list(in_parts(positions))
    assert len(parts) > 5 and [p for part in parts for p in part] == positions
