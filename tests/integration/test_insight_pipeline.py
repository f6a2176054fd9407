"""Cohorts and grades through the production pipeline: PostgreSQL ledger → relay → Kafka
protocol → projector → ClickHouse 18.16, tokens only on the way, figures equal the fold."""

from __future__ import annotations

import json

import grade_events as ge
import reference_metrics as ref
from pipeline import kafka_settings, running_pipeline, wait_caught_up

from tutorledger.domain.grades import Grade
from tutorledger.domain.records import put_cohort, record_grades
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.projections.cohorts import list_cohorts
from tutorledger.projections.filters import Filters
from tutorledger.projections.outcomes import outcomes

D = "kp-graded"


def test_cohorts_and_grades_reach_clickhouse_through_kafka(
    pg_dsn: str, kafka_bootstrap: str, clickhouse_url: str
) -> None:
    g = ge.generate(D, students=48)
    settings = kafka_settings(pg_dsn, kafka_bootstrap, clickhouse_url)
    ledger = open_ledger(settings)
    try:
        for i in range(0, len(g.events), 1000):
            ledger.record_events(g.events[i : i + 1000])
        grades = [
            Grade(r["student"], r["subject"].lower(), r["term"], ge.GRADED[r["term"]],
                  ge.LETTERS.get(r["grade"].upper()) or float(r["grade"]))
            for r in g.rows
        ]  # fmt: skip
        assert record_grades(ledger, D, grades).recorded == len(grades)
        half = sorted(g.grades)[::2]
        position, size = put_cohort(ledger, D, "half", "Half", half)
    finally:
        ledger.close()
    with running_pipeline(settings) as store:
        head = wait_caught_up(settings, store)
        assert store.execute("SELECT count() FROM dead_letters")[0][0] == 0
        cohorts = list_cohorts(store, "cohort_updates_g1", D, head)
        assert [(c["cohort_id"], c["size"], c["position"]) for c in cohorts] == [
            ("half", size, position)
        ]
        sql = (
            "SELECT members, student_id FROM ledger_events FINAL WHERE district_id = %(d)s "
            "AND type IN ('cohort.updated', 'grade.recorded')"
        )
        carried = json.dumps(store.execute(sql, {"d": D}))
        assert not any(s in carried for s in g.grades)  # tokens only, through Kafka too
        whole = Filters(D, head, ge.TZ, generation=1, subject="algebra")
        got = outcomes(store, whole, ge.TERM_FROM, ge.TERM_TO)["rows"]
        assert got == list(ref.outcome_bands(g.grades, g.used).values())
        mine = {s: g.grades[s] for s in half}
        cohort = Filters(D, head, ge.TZ, generation=1, subject="algebra", cohort_id="half")
        got = outcomes(store, cohort, ge.TERM_FROM, ge.TERM_TO)["rows"]
        assert got == list(ref.outcome_bands(mine, g.used).values())
