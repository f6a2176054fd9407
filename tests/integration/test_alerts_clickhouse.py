"""Dosage and every alert kind give identical answers on ClickHouse 18.16 and chdb, equal to
the independent reference, at the head and at an earlier position (planted cases included)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import reference_insight as insight
from insight_events import AT, insight_district
from metric_events import TZ

from tutorledger.bench.metrics_latency import load
from tutorledger.domain.alert_rules import AlertRules
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.alerts import school_alerts
from tutorledger.projections.alerts_students import student_alerts
from tutorledger.projections.dosage import dosage
from tutorledger.projections.filters import Filters

D = "ch-alerts"
RULES = AlertRules()


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _answers(store: ProjectionStore, position: int) -> dict[str, Any]:
    base = Filters(D, position, TZ)
    schools = [asdict(a) for a in school_alerts(store, base, AT, RULES)]
    students = [asdict(a) for a in student_alerts(store, base, AT, RULES)]
    nobody = dosage(store, Filters(D, position, TZ, school_id="no-such-school"), 60)
    return _plain({"dosage": dosage(store, base, 60), "schools": schools, "students": students,
                   "nobody": nobody})  # fmt: skip


def _school_view(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: a[k] for k in ("kind", "scope", "figures")} for a in answer["schools"]]


def _student_view(answer: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    out = []
    for a in answer["students"]:
        ids = a["figures"].get("session_ids") or [a["scope"]["session_id"]]
        out.append((a["kind"], a["scope"]["subject"], sorted(ids)))
    return sorted(out)


def _tokenless(answer: dict[str, Any]) -> list[str]:
    out = []
    for a in answer["students"]:
        assert a["scope"].pop("student_token")
        out.append(json.dumps(a, sort_keys=True))
    return sorted(out)


def test_alerts_identical_on_clickhouse_18_and_chdb_and_equal_reference(
    chdb_url: str, clickhouse_url: str
) -> None:
    seen: set[str] = set()
    events = [
        e for e in insight_district(D) if not (e["event_id"] in seen or seen.add(e["event_id"]))
    ]
    early = len(events) - 40
    answers: dict[str, list[dict[str, Any]]] = {}
    for url in (chdb_url, clickhouse_url):
        store = open_projection_store(Settings(clickhouse=url))
        try:
            head = load(store, events, block=5000)
            answers[store.kind] = [_answers(store, head), _answers(store, early)]
        finally:
            store.close()
    for a, b in zip(answers["chdb"], answers["clickhouse"], strict=True):
        assert (a["dosage"], a["schools"], a["nobody"]) == (b["dosage"], b["schools"], b["nobody"])
        assert _tokenless(a) == _tokenless(b)  # each load draws its own tokens
    for answer, prefix in zip(answers["chdb"], (events, events[:early]), strict=True):
        assert _school_view(answer) == _plain(insight.school_alerts(prefix, D, TZ, AT))
        expected = insight.student_alerts(prefix, D, TZ, AT)
        assert _student_view(answer) == sorted(
            (a["kind"], a["subject"], a["session_ids"]) for a in expected
        )
        assert answer["nobody"] == _plain(insight.dosage(prefix, D, TZ, school_id="no-such-school"))
        assert answer["dosage"] == _plain(insight.dosage(prefix, D, TZ))
    head_kinds = {a["kind"] for a in answers["chdb"][0]["schools"] + answers["chdb"][0]["students"]}
    assert head_kinds == {"subject_hotspot", "long_waits", "falling_use", "tutor_overlap",
                          "repeated_subject", "long_session"}  # fmt: skip
