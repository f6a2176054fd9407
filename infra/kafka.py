"""Kafka clients (kafka-python) configured once from Settings."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from tutorledger.infra.settings import Settings

log = logging.getLogger(__name__)
WATERMARK_TYPE = "ledger.watermark"


def make_producer(settings: Settings, **overrides: Any) -> Any:
    """Durable, ordered producer: acks from all replicas, idempotent, compressed, batched."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "gzip",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_in_flight_requests_per_connection": 5,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "request_timeout_ms": 30_000,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(settings: Settings, **overrides: Any) -> Any:
    """Group consumer that never commits on its own: offsets follow ClickHouse inserts."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": settings.kafka_group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.projector_batch_size,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 3_000,
        "max_poll_interval_ms": 600_000,
        # The broker may hold a fetch this long when nothing is there; Kafka answers as soon
        # as a record arrives, so a long wait costs nothing. tansu's S3 storage lists the
        # partition's batch objects inside this wait and answers empty when it runs out: at
        # kafka-python's 500 ms a partition of some thousands of batches was never read again.
        "fetch_max_wait_ms": settings.kafka_fetch_wait_ms,
    }
    config.update(overrides)
    return KafkaConsumer(**config)


def ensure_topics(settings: Settings, replication_factor: int = 1) -> None:
    """Create the event and dead-letter topics when missing (production pre-creates them)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, settings.kafka_partitions, replication_factor)
            for name in (settings.kafka_topic, settings.kafka_dead_letter_topic)
            if name not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
            log.info("topics created", extra={"topics": [t.name for t in wanted]})
    finally:
        admin.close()


def make_probe(settings: Settings) -> Any:
    """A group-less consumer used only to ask the cluster for metadata (readiness)."""
    return KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=5_000,
        bootstrap_timeout_ms=5_000,
    )
