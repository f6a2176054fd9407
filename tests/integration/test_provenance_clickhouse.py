"""Provenance in the read models on chdb and ClickHouse 18.16: the provider filter and
`group_by=provider` equal the reference fold, and the tutor-overlap audit equals a
brute-force fold with planted overlaps (back-to-back sessions at the same second are not)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
import reference_metrics as ref
from overlap_events import PROVIDERS, planted
from reference_overlap import overlapping_ids, reference

from tutorledger.bench.metrics_latency import published
from tutorledger.domain.envelope import parse_envelope
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.demand import demand
from tutorledger.projections.filters import Filters
from tutorledger.projections.overlap import audit, evidence, intervals, tutor_overlap
from tutorledger.projections.participation import participation
from tutorledger.projections.rows import event_row
from tutorledger.projections.satisfaction import satisfaction
from tutorledger.projections.wait_times import wait_times
from tutorledger.projections.writer import ReadModelWriter

D, TZ = "prov-d", "America/New_York"
KEY_IDS = {PROVIDERS[0]: "0123456789abcdef", PROVIDERS[1]: "fedcba9876543210"}


def load(store: ProjectionStore, events: list[dict[str, Any]]) -> int:
    """Project the events as the ledger would have stored them: each with its provenance."""
    tokens: dict[str, str] = {}
    rows = []
    for position, raw in enumerate(events, start=1):
        body = {k: v for k, v in raw.items() if k != "provenance"}
        event = published(parse_envelope(body).canonical(), tokens)
        provider = raw["provenance"]["provider"]
        event["provenance"] = {"format": 1, "via": "api", "provider": provider,
                               "key_id": KEY_IDS[provider]}  # fmt: skip
        rows.append(event_row(position, event))
    # Two batches: the second's steps find their requests in the read model, not the batch.
    half = len(rows) // 2
    writer = ReadModelWriter(store)
    writer.write(rows[:half])
    ReadModelWriter(store).write(rows[half:])
    return len(rows)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@pytest.fixture
def loaded(projections: ProjectionStore) -> tuple[ProjectionStore, list[dict[str, Any]], int]:
    events = planted(D)
    return projections, events, load(projections, events)


def test_raw_rows_keep_each_events_provenance(loaded: Any) -> None:
    store, events, _ = loaded
    rows = store.execute(
        "SELECT provider, key_id, count() FROM ledger_events FINAL WHERE district_id = %(d)s "
        "GROUP BY provider, key_id ORDER BY provider",
        {"d": D},
    )
    expected: dict[str, int] = {}
    for e in events:
        expected[e["provenance"]["provider"]] = expected.get(e["provenance"]["provider"], 0) + 1
    assert [(str(p), str(k), int(n)) for p, k, n in rows] == sorted(
        (p, KEY_IDS[p], n) for p, n in expected.items()
    )


FILTERS: list[dict[str, Any]] = [
    {},
    {"provider": PROVIDERS[0]},
    {"provider": PROVIDERS[1], "school_id": "sch-2"},
    {"provider": "nobody"},
    {"date_from": date(2026, 3, 9), "date_to": date(2026, 3, 15)},
]


@pytest.mark.parametrize("f", FILTERS, ids=str)
def test_provider_filter_and_grouping_equal_the_fold(loaded: Any, f: dict[str, Any]) -> None:
    store, events, head = loaded
    filters = Filters(D, head, TZ, **f)
    for keys, names in (((), ()), (("provider",), ("provider",)),
                        (("school_id", "subject"), ("school", "subject"))):  # fmt: skip
        assert _plain(wait_times(store, filters, keys)) == _plain(
            ref.wait_times(events, D, TZ, names, **f)
        ), keys
        assert _plain(satisfaction(store, filters, keys)) == _plain(
            ref.satisfaction(events, D, TZ, names, **f)
        ), keys
        if keys:
            assert _plain(demand(store, filters, keys)) == _plain(
                ref.demand(events, D, TZ, names, **f)
            ), keys
    served = participation(store, filters)["students_served"]
    chosen = ref.select(events, D, TZ, **f)
    assert served == len({s.request["student_id"] for s in chosen})


@pytest.mark.parametrize("f", [{}, {"provider": PROVIDERS[1]},
                               {"date_from": date(2026, 3, 9)}], ids=str)  # fmt: skip
def test_tutor_overlap_equals_a_brute_force_fold(loaded: Any, f: dict[str, Any]) -> None:
    store, events, head = loaded
    filters = Filters(D, head, TZ, **f)
    got = [t.as_dict() for t in tutor_overlap(store, filters)]
    assert _plain(got) == _plain(reference(events, D, TZ, **f))


def test_planted_edges(loaded: Any) -> None:
    store, events, head = loaded
    found = intervals(store, Filters(D, head, TZ))
    rows = evidence(found, audit(found))
    listed = {r["session_id"]: set(r["overlaps_with"]) for r in rows}
    assert listed == overlapping_ids(events, D)
    # Back-to-back at the same second: edge-1 ends at 10:30:00 as edge-2 starts.
    assert "edge-1" not in listed and listed["edge-2"] == {"edge-3"}
    assert listed["micro-1"] == {"micro-2"}  # one microsecond is enough
    assert "same-3" not in listed  # the same tutor id under another provider
    by_tutor = {(t.provider, t.tutor_id): t for t in tutor_overlap(store, Filters(D, head, TZ))}
    assert by_tutor[(PROVIDERS[0], "t-edge")].highest_concurrency == 2
    assert by_tutor[(PROVIDERS[1], "t-three")].highest_concurrency == 3
    assert by_tutor[(PROVIDERS[1], "t-three")].overlapping == 3


def test_as_of_position_sees_only_earlier_completions(loaded: Any) -> None:
    store, events, head = loaded
    half = head // 2
    earlier = replace(Filters(D, head, TZ), as_of_position=half)
    got = [t.as_dict() for t in tutor_overlap(store, earlier)]
    assert _plain(got) == _plain(reference(events[:half], D, TZ))
