"""Provenance through the production pipeline: PostgreSQL → relay → Kafka protocol (tansu)
→ Kafka projector → ClickHouse 18.16. The published events carry it (none is dead-lettered)
and the read models it fills answer the provider filter and the tutor-overlap audit as the
reference folds do."""

from __future__ import annotations

import json

from overlap_events import PROVIDERS, by_provider, planted
from pipeline import kafka_settings, running_pipeline, wait_caught_up
from reference_overlap import reference

from tutorledger.domain.provenance import by_key
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings
from tutorledger.projections.filters import Filters
from tutorledger.projections.overlap import tutor_overlap
from tutorledger.projections.participation import participation

D, TZ = "prov-pipe", "America/New_York"
KEY_IDS = {PROVIDERS[0]: "0123456789abcdef", PROVIDERS[1]: "fedcba9876543210"}


def test_provenance_reaches_the_read_models_through_kafka(
    pg_dsn: str, kafka_bootstrap: str, clickhouse_url: str
) -> None:
    events = planted(D)
    ledger = open_ledger(Settings(event_store=pg_dsn))
    try:
        for provider, bodies in by_provider(events).items():
            outcomes = ledger.record_events(bodies, by_key(KEY_IDS[provider], provider))
            assert {o.status for o in outcomes} == {"accepted"}
    finally:
        ledger.close()
    settings = kafka_settings(pg_dsn, kafka_bootstrap, clickhouse_url)
    with running_pipeline(settings) as store:
        head = wait_caught_up(settings, store)
        assert store.execute("SELECT count() FROM dead_letters")[0][0] == 0
        rows = store.execute(
            "SELECT provider, key_id, count() FROM ledger_events FINAL "
            "WHERE district_id = %(d)s GROUP BY provider, key_id ORDER BY provider",
            {"d": D},
        )
        sent = by_provider(events)
        assert [(str(p), str(k), int(n)) for p, k, n in rows] == sorted(
            (p, KEY_IDS[p], len(sent[p])) for p in PROVIDERS
        )
        for provider in PROVIDERS:
            served = participation(store, Filters(D, head, TZ, provider=provider))
            students = {e["payload"]["student_id"] for e in sent[provider] if "student_id" in
                        e["payload"]}  # fmt: skip
            assert served["students_served"] == len(students)
        got = [t.as_dict() for t in tutor_overlap(store, Filters(D, head, TZ))]
        assert json.loads(json.dumps(got)) == json.loads(json.dumps(reference(events, D, TZ)))
