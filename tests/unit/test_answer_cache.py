"""Answers at a fixed position are reused only while the read models' rows at or below it
are unchanged: a row added below the position (what `repair` does) is counted at once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from builders import post_all, write_keys
from fastapi.testclient import TestClient
from metric_events import edge_batches, envelope

from tutorledger.api.app import create_app
from tutorledger.api.http.routes.metrics import epochs_of
from tutorledger.infra.clickhouse import Encoded, Row
from tutorledger.infra.settings import Settings
from tutorledger.projections.answer_cache import EPOCH_PARAM, AnswerCache
from tutorledger.projections.read_models import current_tables

KEY = "answer-cache-admin-key-000"
HEADERS = {"Authorization": f"Bearer {KEY}"}
D, OTHER = "ac-d", "ac-other"


class Counting:
    """A store that answers every query with a fresh list and counts the queries."""

    kind = "fake"

    def __init__(self, rows: int = 1) -> None:
        self.calls = 0
        self.rows = rows

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        self.calls += 1
        return [(self.calls, i) for i in range(self.rows)]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        raise AssertionError("not used")

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Encoded:
        raise AssertionError("not used")

    def send(self, block: Encoded) -> None:
        raise AssertionError("not used")

    def close(self) -> None:
        pass


def test_only_queries_with_an_epoch_are_kept_and_the_oldest_go_first() -> None:
    raw = Counting()
    cache = AnswerCache(raw, rows=2)  # one row per answer here: two answers kept
    assert cache.execute("q", {"as_of": 5}) != cache.execute("q", {"as_of": 5})  # no epoch
    at = {"as_of": 5, EPOCH_PARAM: "1:10"}
    first = cache.execute("q", at)
    assert cache.execute("q", dict(at)) == first and cache.hits == 1
    assert cache.execute("q", at | {EPOCH_PARAM: "1:11"}) != first  # rows changed below 5
    cache.execute("r", at)  # a third entry pushes out the least recently used ("q", 1:10)
    assert cache.execute("q", at) != first


def test_large_answers_are_not_kept() -> None:
    raw = Counting(rows=20_001)
    cache = AnswerCache(raw, rows=10**6)
    at = {"as_of": 5, EPOCH_PARAM: "1:10"}
    cache.execute("q", at)
    cache.execute("q", at)
    assert raw.calls == 2 and cache.hits == 0


def test_the_row_budget_holds_whatever_the_answers_sizes() -> None:
    cache = AnswerCache(Counting(rows=30), rows=100)
    for n in range(10):
        cache.execute(f"q{n}", {EPOCH_PARAM: "1:1"})
    assert cache._held <= 100 and len(cache._kept) == 3


def test_no_epoch_query_runs_where_no_answer_can_be_reused() -> None:
    """A raw store or a cache of 0 rows answers nothing from memory: resolving filters must
    not pay the epoch count (or the generation lookup) for it."""
    for store in (Counting(), AnswerCache(Counting(), rows=0)):
        assert epochs_of(store, D, (5, 3)) == ()
        raw = store.store if isinstance(store, AnswerCache) else store
        assert raw.calls == 0


@pytest.fixture
def client(tmp_path: Path, chdb_url: str) -> Iterator[TestClient]:
    keys = write_keys(tmp_path / "keys.json", [{"key": KEY, "role": "admin", "districts": ["*"]}])
    settings = Settings(
        event_store=f"sqlite:///{tmp_path}/l.db",
        clickhouse=chdb_url,
        api_keys_file=keys,
        var_dir=tmp_path / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


def requested(client: TestClient, position: int) -> Any:
    response = client.get(
        f"/v1/metrics/participation?district_id={D}&as_of_position={position}", headers=HEADERS
    )
    assert response.status_code == 200, response.text
    return response.json()["sessions_requested"]


def test_a_row_repaired_below_the_position_is_counted_at_once(client: TestClient) -> None:
    batches = edge_batches(D)
    post_all(client, batches[0], HEADERS)
    # Another district's event takes a position inside D's range: the "lost" row goes there.
    other = envelope(OTHER, "o-1", "requested", "2026-10-27T09:00:00-04:00", school_id="o",
                     student_id="o-s", grade=5, subject="algebra")  # fmt: skip
    hole = post_all(client, [other], HEADERS)
    at = post_all(client, [e for b in batches[1:] for e in b], HEADERS)
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    cache = runtime.projections
    assert isinstance(cache, AnswerCache)
    before = requested(client, at)
    hits = cache.hits
    assert requested(client, at) == before and cache.hits > hits  # the same answer, reused
    facts = current_tables(cache.store).facts
    columns = [str(r[0]) for r in cache.store.execute(f"DESCRIBE TABLE {facts}")]
    (row,) = cache.store.execute(
        f"SELECT * FROM {facts} WHERE district_id = %(d)s AND step = 0 LIMIT 1", {"d": D}
    )
    repaired = dict(zip(columns, row, strict=True)) | {"session_id": "repaired", "position": hole}
    cache.store.insert(facts, columns, [tuple(repaired[c] for c in columns)])
    assert requested(client, at) == before + 1
