"""Hold up under attack (issue 29): bounded work per request, and suppression that survives
differencing.

- A long range is refused before any figure query runs (queries counted, never timed).
- Figure requests beyond a key's slots get 429, beyond the process's 503, with Retry-After;
  health checks answer while every figure slot is held (waiting on events, not deadlines).
- A query past its budget is interrupted (a real slow query on chdb) and answered 503.
- A dashboard key cannot learn one student's rating by asking two positions, or two ranges,
  around the student's survey; an auditor still sees the exact figures.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import envelope, write_keys
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorledger.api.app import create_app
from tutorledger.api.http.bounds import check_span, whole_weeks
from tutorledger.api.metrics import schemas as ms
from tutorledger.api.metrics.registry import DEMAND, PARTICIPATION
from tutorledger.api.metrics.schemas import Participation
from tutorledger.api.metrics.suppression import suppress_metric
from tutorledger.domain.errors import QueryTimeout, RangeTooLong
from tutorledger.infra.clickhouse import ChdbStore, ProjectionStore, Row, query_budget
from tutorledger.infra.settings import Settings

K = 5
D = "diff-d"
SCHOOL = "sch-01"
KEYS = {
    "dashboard": "bounded-dashboard-key-0000",
    "dashboard2": "bounded-dashboard-key-0002",
    "dashboard3": "bounded-dashboard-key-0003",
    "auditor": "bounded-auditor-key-000000",
    "admin": "bounded-admin-key-00000000",
}
FIRST_DAY = date(2026, 10, 5)  # a Monday
JANE_DAY = date(2026, 10, 20)  # Tuesday of the third week; nobody else asks that week


def settings_for(tmp: Path, chdb_dir: Path, **extra: Any) -> Settings:
    districts = tmp / "districts.json"
    districts.write_text(json.dumps({D: {"suppression_threshold": K}}))
    specs = [
        {"key": key, "role": name.rstrip("23"), "districts": ["*"]} for name, key in KEYS.items()
    ]
    return Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}",
        api_keys_file=write_keys(tmp / "keys.json", specs),
        districts_file=districts,
        var_dir=tmp / "var",
        **extra,
    )


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def session(sid: str, student: str, day: date, rating: int, helped: bool) -> list[Any]:
    at = datetime(day.year, day.month, day.day, 15, 0).isoformat() + "-04:00"
    later = [(datetime.fromisoformat(at) + timedelta(hours=h)).isoformat() for h in (1, 2, 3)]
    request = {"school_id": SCHOOL, "student_id": student, "grade": 5, "subject": "algebra"}
    return [
        envelope(D, sid, "requested", at, request),
        envelope(D, sid, "matched", later[0], {"tutor_id": "t1"}),
        envelope(D, sid, "completed", later[1], {"outcome": "resolved"}),
        envelope(D, sid, "surveyed", later[2], {"helped": helped, "rating": rating}),
    ]


@pytest.fixture(scope="module")
def district(
    tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path
) -> Iterator[tuple[TestClient, int]]:
    """Twelve students surveyed (rating 4), six on each of two Mondays; then Jane asks alone
    in the third week, and her survey (rating 1, not helped) is at `head`; one request a
    week later follows."""
    tmp = tmp_path_factory.mktemp("bounded")
    with TestClient(create_app(settings_for(tmp, chdb_dir))) as client:
        ledger = client.app.state.runtime.ledger  # type: ignore[attr-defined]
        events = []
        for i in range(12):
            day = FIRST_DAY + timedelta(days=7 * (i // 6))
            events += session(f"s-{i}", f"stu-{i}", day, 4, True)
        jane = session("s-jane", "stu-jane", JANE_DAY, 1, False)
        ledger.record_events(events + jane[:3])
        ledger.record_events(jane[3:])
        head = client.app.state.runtime.ledger_head()  # type: ignore[attr-defined]
        # A later day's event: the run of Jane's day is then followed, hence published.
        later = session("s-later", "stu-later", JANE_DAY + timedelta(days=7), 4, True)
        ledger.record_events(later[:1])
        yield client, head


def satisfaction(client: TestClient, key: str, **params: Any) -> dict[str, Any]:
    response = client.get(
        "/v1/metrics/satisfaction",
        params={"district_id": D, "school_id": SCHOOL, **params},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def row(body: Mapping[str, Any]) -> dict[str, Any]:
    (only,) = body["rows"]
    found: dict[str, Any] = only
    return found


def revealed(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What subtracting answer `a` from answer `b` tells about fewer than K surveys: a count
    that moved by 1 … K − 1, or a mean shown in both over different survey counts."""
    found = []
    for name in ("completed", "surveys", "helped"):
        x, y = a.get(name), b.get(name)
        if x is not None and y is not None and 0 < abs(x - y) < K:
            found.append(name)
    for name in ("mean_rating", "helped_rate"):
        if a.get(name) is not None and b.get(name) is not None and a[name] != b[name]:
            found.append(name)
    return found


def test_auditor_sees_the_exact_difference_the_attack_used(
    district: tuple[TestClient, int],
) -> None:
    """The premise: between the two positions, exactly one survey (Jane's) is added."""
    client, head = district
    before = row(satisfaction(client, "auditor", as_of_position=head - 1))
    after = row(satisfaction(client, "auditor", as_of_position=head))
    assert (before["surveys"], after["surveys"]) == (12, 13)
    assert 13 * after["mean_rating"] - 12 * before["mean_rating"] == pytest.approx(1)


def test_positions_around_one_survey_reveal_nothing(district: tuple[TestClient, int]) -> None:
    client, head = district
    before = satisfaction(client, "dashboard", as_of_position=head - 1)
    after = satisfaction(client, "dashboard", as_of_position=head)
    assert before["filters"]["asked_as_of_position"] == head - 1
    assert before["as_of_position"] < head - 1  # rounded down to the end of a day's run
    assert after["as_of_position"] == head
    assert revealed(row(before), row(after)) == []
    # Not by withholding everything: the earlier answer still shows its twelve surveys.
    assert (row(before)["surveys"], row(before)["mean_rating"]) == (12, 4.0)
    assert row(after)["surveys"] is None and row(after)["mean_rating"] is None


def test_ranges_around_one_survey_reveal_nothing(district: tuple[TestClient, int]) -> None:
    client, _ = district
    start = FIRST_DAY.isoformat()
    for earlier, later in (
        (JANE_DAY - timedelta(days=1), JANE_DAY),  # one day apart: the same whole weeks
        (JANE_DAY - timedelta(days=2), JANE_DAY + timedelta(days=5)),  # one week apart
    ):
        a = satisfaction(client, "dashboard", **{"from": start, "to": earlier.isoformat()})
        b = satisfaction(client, "dashboard", **{"from": start, "to": later.isoformat()})
        assert revealed(row(a), row(b)) == [], (earlier, later)
        assert b["filters"]["from"] == start and b["filters"]["to"].endswith(("-18", "-25"))
    exact = satisfaction(client, "auditor", **{"to": (JANE_DAY - timedelta(days=1)).isoformat()})
    assert row(exact)["surveys"] == 12  # the auditor's range is not widened


def test_suppressed_rows_withhold_telling_zeros() -> None:
    def body(served: int) -> Participation:
        return Participation.model_validate(
            {"district_id": "d", "as_of_position": 1, "head_hash": None, "filters": {},
             "enrolled": 400, "cohort_size": None, "students_served": served,
             "sessions_requested": served * 3, "sessions_matched": served * 3,
             "sessions_completed": served * 2, "sessions_cancelled": 0, "reach_rate": 0.1,
             "sessions_per_served_student": 3.0}
        )  # fmt: skip

    small = suppress_metric(PARTICIPATION, body(2), "dashboard", 10)
    assert small.students_served is None and small.sessions_cancelled is None
    large = suppress_metric(PARTICIPATION, body(50), "dashboard", 10)
    assert large.sessions_cancelled == 0 and not large.suppressed


def demand(cells: Sequence[int]) -> ms.Demand:
    rows = [
        {"school_id": f"s{i}", "subject": "math", "requests": n, "completed": n, "students": n,
         "share": 0.1, "lift": 1.0}
        for i, n in enumerate(cells)
    ]  # fmt: skip
    return ms.Demand(district_id="d", as_of_position=1, head_hash=None, filters={},
                     group_by=["school", "subject"], rows=rows)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 12)), min_size=1, max_size=6))
def test_no_shown_cell_moved_by_a_small_count(pairs: list[tuple[int, int]]) -> None:
    before = demand([a for a, _ in pairs])
    now = demand([a + grow for a, grow in pairs])
    shown = suppress_metric(DEMAND, now, "dashboard", K, neighbours=[before])
    for r, old in zip(shown.rows, before.rows, strict=True):
        if r.requests is not None:
            assert not 0 < r.requests - old.requests < K


# -- bounded work ---------------------------------------------------------------------------


class CountingStore:
    """The projection store, counting queries (and holding them at a gate when armed)."""

    def __init__(self, inner: ProjectionStore) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.queries = 0
        self.gate: threading.Event | None = None
        self.waiting = threading.Semaphore(0)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        if self.gate is not None and sql != "SELECT 1":
            self.waiting.release()
            self.gate.wait()
        self.queries += 1
        return self.inner.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def counted(district: tuple[TestClient, int]) -> Iterator[tuple[TestClient, CountingStore]]:
    client, _ = district
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    store = CountingStore(runtime.projections)
    runtime.projections = store
    try:
        yield client, store
    finally:
        runtime.projections = store.inner


@pytest.mark.parametrize(
    "path",
    [
        "/v1/metrics/engagement",
        "/v1/metrics/dosage",
        f"/dashboard/{D}",
        f"/dashboard/{D}/csv/reach-trend",
    ],
)
@pytest.mark.parametrize(
    "dates",
    [{"from": "1970-01-01", "to": "2105-12-31"}, {"from": "1970-01-01"}, {"to": "2105-12-31"}],
)
def test_a_long_range_is_refused_before_any_query(
    counted: tuple[TestClient, CountingStore], path: str, dates: dict[str, str]
) -> None:
    client, store = counted
    if path.startswith("/dashboard"):
        client.post("/signin", data={"key": KEYS["dashboard"], "next": "/"},
                    headers={"Origin": str(client.base_url)}, follow_redirects=False)  # fmt: skip
    response = client.get(path, params={"district_id": D, **dates}, headers=auth("dashboard"))
    assert response.status_code == 422, response.text[:300]
    assert store.queries == 0
    if not path.startswith("/dashboard"):
        error = response.json()["error"]
        assert error["code"] == "range_too_long" and error["details"]["max_days"] == 1096


def test_a_range_within_the_bound_is_answered(counted: tuple[TestClient, CountingStore]) -> None:
    client, _ = counted
    params = {"district_id": D, "from": "2024-01-01", "to": "2026-12-31"}
    body = client.get("/v1/metrics/engagement", params=params, headers=auth("auditor")).json()
    assert len(body["rows"]) <= 1096 // 7 + 2


def test_span_rule() -> None:
    today = date(2026, 12, 7)
    check_span(None, None, today, 10)
    check_span(date(2026, 11, 28), None, today, 10)
    with pytest.raises(RangeTooLong):
        check_span(date(2026, 11, 27), None, today, 10)
    with pytest.raises(RangeTooLong):
        check_span(None, date(2026, 12, 17), today, 10)
    assert whole_weeks(date(2026, 10, 21), date(2026, 10, 21)) == (
        date(2026, 10, 19), date(2026, 10, 25),
    )  # fmt: skip


def test_chdb_interrupts_a_query_past_its_budget(chdb_dir: Path) -> None:
    store = ChdbStore(str(chdb_dir), f"t_{uuid.uuid4().hex}")
    try:
        with query_budget(1), pytest.raises(QueryTimeout):
            store.execute("SELECT sum(number) FROM numbers(100000000000)")
        assert store.execute("SELECT 1") == [(1,)]  # the data dir is free again, unbounded
    finally:
        store.close()


@pytest.fixture
def limited(tmp_path: Path, chdb_dir: Path) -> Iterator[tuple[TestClient, CountingStore]]:
    settings = settings_for(tmp_path, chdb_dir, figure_requests_per_key=2, figure_requests=3)
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        runtime.sync()
        store = CountingStore(runtime.projections)
        runtime.projections = store
        yield client, store
        runtime.projections = store.inner


def test_slots_per_key_and_in_all_with_health_answering(
    limited: tuple[TestClient, CountingStore],
) -> None:
    client, store = limited
    store.gate = gate = threading.Event()

    def figures(key: str) -> Any:
        return client.get("/v1/metrics/participation", params={"district_id": D},
                          headers=auth(key))  # fmt: skip

    with ThreadPoolExecutor(max_workers=3) as pool:
        try:
            held = [pool.submit(figures, "auditor") for _ in range(2)]
            for _ in held:
                store.waiting.acquire()  # both are inside a query, holding their slots
            refused = figures("auditor")
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_requests"
            assert int(refused.headers["Retry-After"]) > 0
            held.append(pool.submit(figures, "dashboard"))
            store.waiting.acquire()
            busy = figures("dashboard2")
            assert busy.status_code == 503 and busy.json()["error"]["code"] == "server_busy"
            assert int(busy.headers["Retry-After"]) > 0
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.get("/readyz").json()["ready"] is True
        finally:
            gate.set()
        assert [f.result().status_code for f in held] == [200, 200, 200]
    store.gate = None
    assert figures("auditor").status_code == 200  # slots were given back


def test_a_request_past_its_budget_is_503_with_retry_after(tmp_path: Path, chdb_dir: Path) -> None:
    settings = settings_for(tmp_path, chdb_dir, figure_seconds=1)
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]

        class Slow(CountingStore):
            def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
                return self.inner.execute("SELECT sum(number) FROM numbers(100000000000)")

        runtime.projections = Slow(runtime.projections)
        response = client.get("/v1/metrics/participation", params={"district_id": D},
                              headers=auth("auditor"))  # fmt: skip
        runtime.projections = runtime.projections.inner
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "query_timeout"
    assert int(response.headers["Retry-After"]) > 0
