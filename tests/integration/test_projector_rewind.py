"""A projector step that fails halfway through a batch skips nothing (real tansu and chdb).

kafka-python moves a consumer's position past every record a poll returns. When a later
poll of the same batch raised (the broker dropped the connection, as each tansu kill in the
soak did), the records already taken were dropped with the failed step, the next poll began
after them and the next commit made the skip permanent: the projections missed events no
error named (a step needing one of them then waited on a request never projected). After a
failed step the projector now seeks back to the committed offsets before polling again.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kafka.errors import KafkaConnectionError
from pipeline import kafka_settings
from waiting import wait_until

from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.consumers.kafka_projector import KafkaProjector, stream_position
from tutorledger.consumers.relay import Relay
from tutorledger.infra.clickhouse import open_projection_store
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.kafka import ensure_topics, make_consumer, make_producer
from tutorledger.projections.schema import migrate

DISTRICT = "d-rewind"


class DropsOnce:
    """The consumer, except that the poll after the first one to return records raises once,
    the way a broker connection lost mid-batch surfaces from kafka-python."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.returned = False
        self.raised = False

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        if self.returned and not self.raised:
            self.raised = True
            raise KafkaConnectionError("connection lost mid-batch (injected)")
        got = self.consumer.poll(*args, **kwargs)
        self.returned = self.returned or any(got.values())
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)


def relay_everything(settings: Any) -> int:
    """Put the whole ledger on the topic; returns the ledger head."""
    ledger = open_ledger(settings)
    producer = make_producer(settings)
    try:
        relay = Relay(ledger, producer, settings.kafka_topic, ledger.factory.tracking_recorder())
        while relay.step():
            pass
        return relay.position
    finally:
        producer.close(timeout=5)
        ledger.close()


def test_a_step_failing_mid_batch_loses_no_record(
    tmp_path: Path, kafka_bootstrap: str, chdb_url: str
) -> None:
    store_url = f"sqlite:///{tmp_path}/ledger.db"
    settings = kafka_settings(store_url, kafka_bootstrap, chdb_url, kafka_partitions=1)
    district = generate(DistrictSpec(district_id=DISTRICT, students=60, schools=2, days=5))
    ledger = open_ledger(settings)
    try:
        for i in range(0, len(district.events), 1000):
            ledger.record_events(district.events[i : i + 1000])
    finally:
        ledger.close()
    ensure_topics(settings)
    head = relay_everything(settings)
    store = open_projection_store(settings)
    migrate(store)
    # Small fetches, so one batch takes several polls and the failure lands inside one.
    consumer = make_consumer(settings, max_partition_fetch_bytes=8192, fetch_max_bytes=8192,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000)  # fmt: skip
    consumer.subscribe([settings.kafka_topic])
    flaky = DropsOnce(consumer)
    dlq = make_producer(settings)
    projector = KafkaProjector(flaky, store, dlq, settings.kafka_dead_letter_topic, 400, 5.0)
    stop = threading.Event()
    worker = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    worker.start()
    try:
        wait_until(lambda: flaky.raised, "the injected failure")
        wait_until(lambda: stream_position(store) >= head, f"the projections to reach {head}")
        total, distinct = store.execute(
            "SELECT count(), uniqExact(position) FROM ledger_events FINAL"
        )[0]
        assert (int(total), int(distinct)) == (head, head)
    finally:
        stop.set()
        worker.join(timeout=30)
        consumer.close()
        dlq.close(timeout=5)
        store.close()
