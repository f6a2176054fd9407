"""Erasure on real stores, embedded and Kafka mode: mid-stream, nothing left to read, every
figure the same, the chain intact, resends of the erased student's events refused.

The erased student gets events with an id, a topic and a comment no generator produces, so a
search of every place the system writes (store files, key table, topic, ClickHouse, logs)
can be exact.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from builders import envelope
from kafka import KafkaConsumer
from pipeline import kafka_settings, running_pipeline, wait_caught_up

from tutorledger.api.cli.audit import metric_answers
from tutorledger.api.runtime import Runtime
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.consumers.rebuild import rebuild
from tutorledger.infra.eventstore.audit import verify_chain
from tutorledger.infra.settings import Settings

DISTRICT = "d-priv"
STUDENT, TOPIC, COMMENT = "stu-erase-QX4711", "Erasable topic QT93", "private words QZ9281"
SECRETS = (STUDENT, TOPIC, COMMENT)


def victim_sessions() -> list[list[dict[str, Any]]]:
    """Three sessions of the student to erase: each requested → … → surveyed, with text."""
    sessions = []
    for k in range(3):
        sid, day = f"victim-{k}", f"2026-03-0{k + 2}T15:"
        sessions.append(
            [
                envelope(DISTRICT, sid, "requested", day + "00:00+00:00",
                         {"school_id": "sch-01", "student_id": STUDENT, "grade": 6,
                          "subject": "algebra", "topic": TOPIC}),
                envelope(DISTRICT, sid, "matched", day + "02:00+00:00", {"tutor_id": "tut-7"}),
                envelope(DISTRICT, sid, "completed", day + "30:00+00:00", {"outcome": "resolved"}),
                envelope(DISTRICT, sid, "surveyed", day + "40:00+00:00",
                         {"helped": True, "rating": 5, "comment": COMMENT}),
            ]
        )  # fmt: skip
    return sessions


def streams() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(first half + two victim sessions, second half, the third victim session)."""
    district = generate(DistrictSpec(district_id=DISTRICT, students=200, schools=3, days=7))
    half = len(district.events) // 2
    v = victim_sessions()
    return district.events[:half] + v[0] + v[1], district.events[half:], v[2]


def load(ledger: Any, events: list[dict[str, Any]]) -> list[Any]:
    outcomes = []
    for i in range(0, len(events), 500):
        outcomes.extend(ledger.record_events(events[i : i + 500]))
    return outcomes


def answers(runtime: Runtime, position: int) -> dict[str, Any]:
    return metric_answers(runtime, DISTRICT, None, None, position)[1]


def assert_nothing_readable(texts: list[str], where: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} found in {where}"


def projections_text(runtime: Runtime) -> list[str]:
    rows = runtime.projections.execute("SELECT * FROM ledger_events")
    return [repr(r) for r in rows]


def store_files_text(store_url: str) -> list[str]:
    if not store_url.startswith("sqlite"):
        return []
    path = Path(store_url.removeprefix("sqlite:///"))
    files = [p for p in path.parent.glob(path.name + "*") if p.is_file()]
    return [p.read_bytes().decode("latin-1") for p in files]


def key_bytes(ledger: Any, token: str) -> bytes:
    secret = ledger.index.student_keys([token])[token].secret
    assert secret is not None
    return bytes(secret)


def erase_mid_stream(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> tuple[int, dict[str, Any], bytes]:
    """Load, erase, keep loading; returns (position before erasure, figures then, key)."""
    first, second, late = streams()
    ledger = runtime.ledger
    load(ledger, first)
    key = ledger.index.find_student(DISTRICT, STUDENT)
    assert key is not None and not key.erased
    secret = key_bytes(ledger, key.token)
    position = runtime.ledger_head()
    before = answers(runtime, position)
    with caplog.at_level(logging.DEBUG):
        erased_at = ledger.erase(DISTRICT, key.token, "parent_request")
        outcomes = load(ledger, second)
    assert erased_at == position + 1
    assert all(o.status != "rejected" for o in outcomes)
    # A new session under the erased id starts a new pseudonym: the old link is gone.
    assert ledger.index.find_student(DISTRICT, STUDENT) is None
    # Resends of the erased student's events are refused and nothing is stored again.
    resend = load(ledger, victim_sessions()[0] + victim_sessions()[1])
    assert {(o.status, o.error.code if o.error else None) for o in resend} == {
        ("rejected", "student_erased")
    }
    # The third victim session never reached the store: a new request under the erased id
    # is a new pseudonymous student (a new token), not the erased one.
    (fresh,) = load(ledger, late[:1])
    assert fresh.status == "accepted"
    assert ledger.index.find_student(DISTRICT, STUDENT) not in (None, key)
    return position, before, secret


def check_after_erasure(
    runtime: Runtime, store_url: str, position: int, before: dict[str, Any], secret: bytes
) -> None:
    ledger = runtime.ledger
    report = verify_chain(ledger.recorder, ledger.mapper, DISTRICT)
    assert report.ok, report.as_dict()
    # Every figure as of the position before the erasure, from projections rebuilt after it.
    rebuild(ledger, runtime.projections, guard=runtime.swap_projections)
    assert answers(runtime, position) == before
    # History shows the fields erased.
    history = [
        e for e in (ledger.mapper.to_domain_event(n).envelope  # type: ignore[attr-defined]
                    for n in ledger.recorder.select_notifications(1, 10**6))
        if e.get("session_id") in ("victim-0", "victim-1")
    ]  # fmt: skip
    opened = ledger.open_stored(history)
    assert {o.erased for o in opened} >= {(), ("student_id", "topic"), ("comment",)}
    assert_nothing_readable([repr(o.envelope) for o in opened], "decrypted history")
    assert_nothing_readable(projections_text(runtime), "ClickHouse ledger_events")
    files = store_files_text(store_url)
    assert_nothing_readable(files, "the store's files")
    assert all(secret.decode("latin-1") not in f for f in files), "key bytes left in the file"


@pytest.fixture
def no_trace_logs(caplog: pytest.LogCaptureFixture) -> Any:
    yield caplog
    assert_nothing_readable([r.getMessage() + repr(vars(r)) for r in caplog.records], "logs")


def test_erasure_embedded(store_url: str, chdb_url: str, no_trace_logs: Any) -> None:
    settings = Settings(event_store=store_url, clickhouse=chdb_url)
    runtime = Runtime.build(settings)
    try:
        position, before, secret = erase_mid_stream(runtime, no_trace_logs)
        runtime.sync()
        check_after_erasure(runtime, store_url, position, before, secret)
    finally:
        runtime.stop()


def topic_text(settings: Settings) -> list[str]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None, consumer_timeout_ms=4000,
    )  # fmt: skip
    try:
        consumer.subscribe([settings.kafka_topic])
        return [m.value.decode() for m in consumer]
    finally:
        consumer.close()


def test_erasure_kafka_mode(
    pg_dsn: str, kafka_bootstrap: str, clickhouse_url: str, no_trace_logs: Any
) -> None:
    settings = kafka_settings(pg_dsn, kafka_bootstrap, clickhouse_url)
    with running_pipeline(settings) as store:
        runtime = Runtime.build(settings)
        try:
            first, second, _ = streams()
            load(runtime.ledger, first)
            key = runtime.ledger.index.find_student(DISTRICT, STUDENT)
            assert key is not None
            position = wait_caught_up(settings, store)
            before = answers(runtime, position)
            with no_trace_logs.at_level(logging.DEBUG):
                runtime.ledger.erase(DISTRICT, key.token, "contract_end")
                load(runtime.ledger, second)
                wait_caught_up(settings, store)
            messages = topic_text(settings)
            assert len(messages) > len(first)
            assert_nothing_readable(messages, "the Kafka topic")
            assert any(key.token in m for m in messages)
            assert answers(runtime, position) == before
            report = verify_chain(runtime.ledger.recorder, runtime.ledger.mapper, DISTRICT)
            assert report.ok
            assert_nothing_readable(projections_text(runtime), "ClickHouse server")
        finally:
            runtime.stop()
