"""Production pipeline on real servers: PostgreSQL → relay → Kafka protocol (tansu) →
projector → ClickHouse 18.16 / chdb. Nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from builders import write_keys
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pipeline import kafka_settings, running_pipeline, wait_caught_up
from reference import participation as reference_participation
from waiting import wait_until

from devtools import services
from tutorledger.api.app import create_app
from tutorledger.bench.district import District, DistrictSpec, generate
from tutorledger.bench.lag import spawn_cli
from tutorledger.consumers.kafka_projector import redact, stream_position
from tutorledger.infra.clickhouse import open_projection_store
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings
from tutorledger.projections.filters import Filters
from tutorledger.projections.participation import participation

TZ = "America/New_York"
DISTRICT = "d-pipe"


@pytest.fixture(scope="module")
def district() -> District:
    return generate(DistrictSpec(district_id=DISTRICT, students=300, schools=3, days=7))


def load(store_url: str, events: list[dict[str, Any]], schools: list[dict[str, Any]]) -> None:
    ledger = open_ledger(Settings(event_store=store_url))
    try:
        for school in schools:
            ledger.put_school(
                DISTRICT, school["school_id"], school["name"], school["enrollment"],
                school["as_of"],
            )  # fmt: skip
        for i in range(0, len(events), 1000):
            ledger.record_events(events[i : i + 1000])
    finally:
        ledger.close()


def figures(settings: Settings, head: int) -> dict[str, Any]:
    store = open_projection_store(settings)
    try:
        return participation(store, Filters(DISTRICT, head, TZ))
    finally:
        store.close()


def exact_rows(settings: Settings) -> tuple[int, int]:
    store = open_projection_store(settings)
    try:
        total, distinct = store.execute(
            "SELECT count(), uniqExact(position) FROM ledger_events FINAL"
        )[0]
        return int(total), int(distinct)
    finally:
        store.close()


def test_production_mode_equals_embedded_mode(
    pg_dsn: str, kafka_bootstrap: str, clickhouse_url: str, chdb_url: str, district: District
) -> None:
    load(pg_dsn, district.events, district.schools)
    settings = kafka_settings(pg_dsn, kafka_bootstrap, clickhouse_url)
    with running_pipeline(settings) as store:
        head = wait_caught_up(settings, store)
    stored = len({e["event_id"] for e in district.events}) + len(district.schools)
    assert exact_rows(settings) == (stored, stored)
    expected = reference_participation(district.events, district.schools, DISTRICT, TZ)
    assert figures(settings, head) == pytest.approx(expected)

    # The same ledger through the embedded projector into chdb answers the same over HTTP.
    keys = write_keys(
        Path(os.environ.get("TMPDIR", "/tmp")) / f"keys-{os.getpid()}.json",
        [{"key": "k" * 20, "role": "admin", "districts": ["*"]}],
    )
    answers = []
    for mode in (settings, Settings(event_store=pg_dsn, clickhouse=chdb_url)):
        app = create_app(mode.model_copy(update={"api_keys_file": keys}))
        with TestClient(app) as client:
            response = client.get(
                "/v1/metrics/participation",
                params={"district_id": DISTRICT},
                headers={"Authorization": "Bearer " + "k" * 20},
            )
            assert response.status_code == 200, response.text
            answers.append(response.json())
            ready = client.get("/readyz").json()
            assert ready["ready"] is True, ready
    assert answers[0] == answers[1]
    assert answers[0]["as_of_position"] == head


def _spawn(command: str, settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """The installed worker, in small batches so a kill lands mid-stream."""
    args = ["--batch-size", "200"] if command == "relay" else []
    return spawn_cli(command, settings, log, args, {"TUTORLEDGER_PROJECTOR_BATCH_SIZE": "300"})


def test_kill_9_relay_and_projector_repeatedly(
    pg_dsn: str, kafka_bootstrap: str, clickhouse_url: str, tmp_path: Path
) -> None:
    big = generate(DistrictSpec(district_id=DISTRICT, students=900, schools=3, days=7, seed=11))
    load(pg_dsn, big.events, big.schools)
    settings = kafka_settings(pg_dsn, kafka_bootstrap, clickhouse_url)
    rng = random.Random(5)
    log = tmp_path / "workers.log"
    for _ in range(4):
        workers = [_spawn("relay", settings, log), _spawn("project", settings, log)]
        time.sleep(rng.uniform(3.0, 6.0))
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    workers = [_spawn("relay", settings, log), _spawn("project", settings, log)]
    try:
        store = open_projection_store(settings)
        try:
            head = wait_caught_up(settings, store)
        finally:
            store.close()
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
    stored = len({e["event_id"] for e in big.events}) + len(big.schools)
    assert exact_rows(settings) == (stored, stored), log.read_text()[-3000:]
    assert figures(settings, head) == pytest.approx(
        reference_participation(big.events, big.schools, DISTRICT, TZ)
    )


def test_broker_and_clickhouse_outages_heal_by_themselves(
    pg_dsn: str, tmp_path: Path, district: District
) -> None:
    broker = services.start_tansu()
    server = services.start_clickhouse(tmp_path / "ch")
    half = len(district.events) // 2
    try:
        settings = kafka_settings(pg_dsn, broker.bootstrap, server.url)
        load(pg_dsn, district.events[:half], district.schools)
        with running_pipeline(settings) as store:
            wait_caught_up(settings, store)
            os.kill(broker.pid, signal.SIGSTOP)  # the broker hangs...
            load(pg_dsn, district.events[half:], [])
            time.sleep(4)
            os.kill(broker.pid, signal.SIGCONT)  # ...and comes back
            os.kill(server.pid, signal.SIGSTOP)  # then ClickHouse hangs...
            time.sleep(4)
            os.kill(server.pid, signal.SIGCONT)  # ...and comes back
            head = wait_caught_up(settings, store)
        stored = len({e["event_id"] for e in district.events}) + len(district.schools)
        assert exact_rows(settings) == (stored, stored)
        assert figures(settings, head) == pytest.approx(
            reference_participation(district.events, district.schools, DISTRICT, TZ)
        )
    finally:
        for pid in (broker.pid, server.pid):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        broker.stop()
        server.stop()


def test_poison_messages_go_to_the_dead_letter_topic(
    pg_dsn: str, kafka_bootstrap: str, chdb_url: str, district: District
) -> None:
    settings = kafka_settings(pg_dsn, kafka_bootstrap, chdb_url)
    load(pg_dsn, district.events[:400], district.schools)
    future_version = {**district.events[0], "schema_version": 99, "position": 10**9}
    bad_payload = {**district.events[0], "payload": {"grade": 99}, "position": 10**9 + 1}
    poison = [
        b"\x00not json",
        json.dumps(future_version).encode(),
        json.dumps(bad_payload).encode(),
    ]
    with running_pipeline(settings) as store:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        for value in poison:
            producer.send(settings.kafka_topic, key=b"poison", value=value)
        producer.flush()
        producer.close()
        head = wait_caught_up(settings, store)
        wait_until(
            lambda: int(store.execute("SELECT count() FROM dead_letters FINAL")[0][0]) >= 3,
            "three dead-letter rows",
        )
        reasons = [r[0] for r in store.execute("SELECT reason FROM dead_letters FINAL")]
        assert len(reasons) == 3, reasons
        assert any("schema_version" in r for r in reasons)
        assert stream_position(store) == head
    dlq = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    parts = [TopicPartition(settings.kafka_dead_letter_topic, p) for p in range(3)]
    dlq.assign(parts)
    dlq.seek_to_beginning()
    dead: list[Any] = []

    def read_dead() -> bool:
        dead.extend(m for batch in dlq.poll(timeout_ms=500).values() for m in batch)
        return len(dead) >= len(poison)

    wait_until(read_dead, "the poison messages on the dead-letter topic", interval=0)
    dead += [m for batch in dlq.poll(timeout_ms=1000).values() for m in batch]  # no extras
    dlq.close()
    # Kept as sent, except personal fields: a refused message carrying a student id keeps
    # "<redacted>" in its place (dead letters are not a way around sealed storage).
    assert sorted(m.value for m in dead) == sorted(redact(p) for p in poison)
    assert not any(b"stu-" in m.value.split(b'"payload"')[-1] for m in dead)
    assert all(dict(m.headers).get("dlq_reason") for m in dead)
    expected = reference_participation(district.events[:400], district.schools, DISTRICT, TZ)
    assert exact_rows(settings)[1] == len({e["event_id"] for e in district.events[:400]}) + 3
    assert figures(settings, head) == pytest.approx(expected)


def join_group(consumers: list[Any]) -> None:
    """Poll every member from its own thread until each holds partitions.

    Polling them in turn from one thread can keep a rebalance from ever settling on a
    loaded machine (a member misses the join while the other one polls).
    """
    import threading

    joined = threading.Event()

    def keep_polling(consumer: Any) -> None:
        while not joined.is_set():
            consumer.poll(timeout_ms=200)

    threads = [threading.Thread(target=keep_polling, args=(c,)) for c in consumers]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: all(c.assignment() for c in consumers), "both members' partitions")
    finally:
        joined.set()
        for t in threads:
            t.join()


def test_two_projectors_in_one_group_share_partitions_exactly(
    pg_dsn: str, kafka_bootstrap: str, clickhouse_url: str, district: District
) -> None:
    import threading

    from pipeline import group_consumer

    from tutorledger.consumers.kafka_projector import KafkaProjector
    from tutorledger.consumers.relay import Relay
    from tutorledger.infra.kafka import ensure_topics, make_producer
    from tutorledger.projections.schema import migrate

    settings = kafka_settings(pg_dsn, kafka_bootstrap, clickhouse_url)
    ensure_topics(settings)
    stores = [open_projection_store(settings) for _ in range(2)]
    migrate(stores[0])
    consumers = [group_consumer(settings) for _ in range(2)]
    join_group(consumers)
    assert not set(consumers[0].assignment()) & set(consumers[1].assignment())
    dlq = make_producer(settings)
    projectors = [
        KafkaProjector(c, s, dlq, settings.kafka_dead_letter_topic, 300, 0.5)
        for c, s in zip(consumers, stores, strict=True)
    ]
    load(pg_dsn, district.events, district.schools)
    ledger = open_ledger(settings)
    producer = make_producer(settings)
    relay = Relay(ledger, producer, settings.kafka_topic, ledger.factory.tracking_recorder(), 400)
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in (relay, *projectors)]
    for t in threads:
        t.start()
    try:
        head = wait_caught_up(settings, stores[0])
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        for c in consumers:
            c.close()
        producer.close(timeout=5)
        dlq.close(timeout=5)
        for s in stores:
            s.close()
        ledger.close()
    assert all(p.projected > 0 for p in projectors), [p.projected for p in projectors]
    stored = len({e["event_id"] for e in district.events}) + len(district.schools)
    assert exact_rows(settings) == (stored, stored)
    assert figures(settings, head) == pytest.approx(
        reference_participation(district.events, district.schools, DISTRICT, TZ)
    )
