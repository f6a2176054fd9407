"""Helpers to run the production pipeline (relay + Kafka projector) inside a test."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from waiting import GENEROUS, wait_until

from tutorledger.consumers.kafka_projector import KafkaProjector, stream_position
from tutorledger.consumers.relay import Relay
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.kafka import ensure_topics, make_consumer, make_producer
from tutorledger.infra.settings import Settings
from tutorledger.projections.schema import migrate


def kafka_settings(store_url: str, bootstrap: str, clickhouse: str, **extra: Any) -> Settings:
    """Production-mode settings on a topic and group of this test's own."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "event_store": store_url,
        "stream": f"kafka://{bootstrap}",
        "clickhouse": clickhouse,
        "kafka_topic": f"events-{tag}",
        "kafka_dead_letter_topic": f"dlq-{tag}",
        "kafka_group": f"group-{tag}",
        "kafka_partitions": 3,
        "projector_batch_size": 500,
    }
    values.update(extra)
    return Settings(**values)


def group_consumer(settings: Settings) -> Any:
    """Group consumer with a short session so a join takes seconds on tansu."""
    consumer = make_consumer(settings, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    consumer.subscribe([settings.kafka_topic])
    return consumer


@contextmanager
def running_pipeline(settings: Settings) -> Iterator[ProjectionStore]:
    """Relay and projector threads; yields the projection store they feed."""
    ensure_topics(settings)
    ledger = open_ledger(settings)
    store = open_projection_store(settings)
    migrate(store)
    producer = make_producer(settings)
    dlq = make_producer(settings)
    consumer = group_consumer(settings)
    stop = threading.Event()
    relay = Relay(ledger, producer, settings.kafka_topic, ledger.factory.tracking_recorder(), 500)
    projector = KafkaProjector(consumer, store, dlq, settings.kafka_dead_letter_topic, 500, 0.5)
    threads = [
        threading.Thread(target=relay.run, args=(stop,), daemon=True),
        threading.Thread(target=projector.run, args=(stop,), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield store
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        consumer.close()
        producer.close(timeout=5)
        dlq.close(timeout=5)
        store.close()
        ledger.close()


def wait_caught_up(settings: Settings, store: ProjectionStore, timeout: float = GENEROUS) -> int:
    """Wait until every partition's watermark reaches the ledger head; returns the head."""
    ledger = open_ledger(settings)
    try:
        head = int(ledger.recorder.max_notification_id() or 0)
    finally:
        ledger.close()
    wait_until(lambda: stream_position(store) >= head, f"the projections to reach {head}", timeout)
    return head
