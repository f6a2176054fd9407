"""Every metric function gives identical figures on ClickHouse 18.16 and chdb 26, equal to the
independent reference: the SQL is portable and exact on both, DST and edge cases included."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import reference_insight as insight
import reference_metrics as ref
from metric_events import TZ, district, edge_batches

from tutorledger.bench.metrics_latency import load
from tutorledger.domain.district import SchoolHours
from tutorledger.infra.clickhouse import open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.demand import demand
from tutorledger.projections.dosage import dosage
from tutorledger.projections.engagement import engagement
from tutorledger.projections.filters import Filters
from tutorledger.projections.satisfaction import satisfaction
from tutorledger.projections.timing import timing
from tutorledger.projections.wait_times import wait_times

GEN, EDGE = "ch-gen", "ch-edge"
FILTERS: list[dict[str, Any]] = [
    {},
    {"school_id": "sch-03", "subject": "geometry"},
    {"grade": 9},
    {"date_from": date(2026, 10, 31), "date_to": date(2026, 11, 1)},
    {"school_id": "sch-02", "date_to": date(2026, 10, 27)},
]
KEYS = {
    (): (),
    ("school",): ("school_id",),
    ("subject",): ("subject",),
    ("school", "subject"): ("school_id", "subject"),
}
HOURS = SchoolHours(days=(1, 2, 3, 4, 5), start="08:00", end="15:30")


def _cases(events: dict[str, list[dict[str, Any]]]) -> list[tuple[str, Any, Any]]:
    """(label, metric on a store at a position, reference figures) for every combination."""
    cases: list[tuple[str, Any, Any]] = []
    for d, filter_list in ((GEN, FILTERS), (EDGE, [{}])):
        for f in filter_list:
            for names, keys in KEYS.items():
                for name, metric, reference in (
                    ("demand", demand, ref.demand),
                    ("wait_times", wait_times, ref.wait_times),
                    ("satisfaction", satisfaction, ref.satisfaction),
                ):
                    if name == "demand" and not keys:
                        continue
                    cases.append(
                        (
                            f"{d} {name} {names} {f}",
                            lambda s, p, d=d, f=f, m=metric, k=keys: m(
                                s, Filters(d, p, TZ, **f), k
                            ),
                            reference(events[d], d, TZ, names, **f),
                        )
                    )
            cases.append(
                (
                    f"{d} timing {f}",
                    lambda s, p, d=d, f=f: timing(s, Filters(d, p, TZ, **f), HOURS),
                    ref.timing(events[d], d, TZ, **f),
                )
            )
            cases.append(
                (
                    f"{d} engagement {f}",
                    lambda s, p, d=d, f=f: engagement(s, Filters(d, p, TZ, **f)),
                    ref.engagement(events[d], d, TZ, **f),
                )
            )
            cases.append(
                (
                    f"{d} dosage {f}",
                    lambda s, p, d=d, f=f: dosage(s, Filters(d, p, TZ, **f), 45),
                    _dosage_figures(insight.dosage(events[d], d, TZ, target=45, **f)),
                )
            )
    # As of an earlier position: only the first `half` distinct events count (late steps not).
    seen: set[str] = set()
    unique = [e for e in events[GEN] if not (e["event_id"] in seen or seen.add(e["event_id"]))]
    half = len(unique) // 2
    earlier = unique[:half]
    cases.append(
        (
            "as_of wait_times",
            lambda s, _: wait_times(s, Filters(GEN, half, TZ), ()),
            ref.wait_times(earlier, GEN, TZ),
        )
    )
    cases.append(
        (
            "as_of engagement",
            lambda s, _: engagement(s, Filters(GEN, half, TZ)),
            ref.engagement(earlier, GEN, TZ),
        )
    )
    cases.append(
        (
            "as_of dosage",
            lambda s, _: dosage(s, Filters(GEN, half, TZ), 60),
            _dosage_figures(insight.dosage(earlier, GEN, TZ)),
        )
    )
    return cases


def _dosage_figures(expected: dict[str, Any]) -> dict[str, Any]:
    rows = [{**r, "week_start": date.fromisoformat(r["week_start"])} for r in expected["rows"]]
    return {**expected, "rows": rows}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def test_metrics_identical_on_clickhouse_18_and_chdb_and_equal_reference(
    chdb_url: str, clickhouse_url: str
) -> None:
    events = {GEN: district(GEN).events, EDGE: [e for b in edge_batches(EDGE) for e in b]}
    everything = events[GEN] + events[EDGE]
    results, versions = {}, {}
    cases = _cases(events)
    for url in (chdb_url, clickhouse_url):
        store = open_projection_store(Settings(clickhouse=url))
        try:
            head = load(store, everything, block=5000)
            versions[store.kind] = str(store.execute("SELECT version()")[0][0])
            results[store.kind] = [_plain(run(store, head)) for _, run, _ in cases]
        finally:
            store.close()
    assert versions["clickhouse"].startswith("18.16") and int(versions["chdb"].split(".")[0]) > 18
    for (label, _, expected), a, b in zip(
        cases, results["chdb"], results["clickhouse"], strict=True
    ):
        assert a == b, label
        assert a == _plain(expected), label
