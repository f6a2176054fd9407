"""Streaming stages of `tutorledger bench`: the relay beside a bare kafka-python producer
sending the same messages, the projector beside a bare consume + insert, then end-to-end lag
at a held rate (bench.lag).

"The same messages" means the same key, value and headers for every ledger event, to a
topic with the same partitions, from a producer with the same configuration: the ratio is
what the relay's own work (page reads, decoding, encoding, waiting for acknowledgements
before it checkpoints) costs on top of the client library.
"""

from __future__ import annotations

import gc
import time
import uuid
from pathlib import Path
from typing import Any

from tutorledger.bench.common import Stage
from tutorledger.bench.lag import sustained_lag
from tutorledger.infra.settings import Settings

RELAY_BATCH = 5000
LAG_SECONDS = {"small": 10.0, "medium": 60.0, "large": 60.0}  # at 2,000 events/s
ROUNDS = 3  # relay and bare producer alternate, so a burst of load elsewhere hits both


def stream_settings(store_url: str, bootstrap: str, clickhouse: str, tag: str) -> Settings:
    return Settings(
        event_store=store_url, stream=f"kafka://{bootstrap}", clickhouse=clickhouse,
        kafka_topic=f"bench-{tag}", kafka_dead_letter_topic=f"bench-dlq-{tag}",
        kafka_group=f"bench-{tag}", kafka_partitions=3,
    )  # fmt: skip


def on_topic(settings: Settings, topic: str) -> Settings:
    """The same settings on a topic of its own (created with the same partitions)."""
    from tutorledger.infra.kafka import ensure_topics

    moved = settings.model_copy(update={"kafka_topic": topic})
    ensure_topics(moved)
    return moved


def relay_once(settings: Settings, topic: str, name: str) -> float:
    """Seconds for a fresh relay (own tracking name) to drain the ledger into `topic`."""
    from tutorledger.consumers.relay import Relay
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.kafka import make_producer

    target = on_topic(settings, topic)
    ledger = open_ledger(target)
    producer = make_producer(target)
    tracking = ledger.factory.tracking_recorder()
    relay = Relay(ledger, producer, topic, tracking, RELAY_BATCH, name=name)
    start = time.perf_counter()
    while relay.step():
        pass
    seconds = time.perf_counter() - start
    producer.close()
    ledger.close()
    return seconds


def relayed_messages(settings: Settings) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """(key, value, headers) of every ledger event, exactly as the relay sends them."""
    from tutorledger.consumers.relay import Relay
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.kafka import make_producer

    ledger = open_ledger(settings)
    producer = make_producer(settings)
    relay = Relay(ledger, producer, settings.kafka_topic, ledger.factory.tracking_recorder(),
                  RELAY_BATCH, name="bench-encode")  # fmt: skip
    messages: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
    after = 0
    while page := relay.encode(after):
        messages.extend((k, v, h) for _, (_, k, v, h) in page)
        after = page[-1][0]
    producer.close()
    ledger.close()
    return messages


def bare_once(settings: Settings, topic: str, messages: list[Any]) -> float:
    """Seconds for a bare producer (same configuration) to send and flush `messages`."""
    from tutorledger.infra.kafka import make_producer

    target = on_topic(settings, topic)
    producer = make_producer(target)
    producer.partitions_for(topic)  # metadata before the clock, as the relay's constructor
    start = time.perf_counter()
    for key, value, headers in messages:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    seconds = time.perf_counter() - start
    producer.close()
    return seconds


def bench_relay(settings: Settings) -> tuple[Stage, str]:
    """Relay vs bare producer, alternating ROUNDS times; returns the stage and a bare topic
    (for the projector's baseline)."""
    messages = relayed_messages(settings)
    relay_s, bare_s = [], []
    # The suite's own heap (every event and message it holds) is no part of either side: kept
    # out of the collector's sight, as a relay process's small heap would be.
    gc.collect()
    gc.freeze()
    for r in range(ROUNDS):
        topic = settings.kafka_topic if r == 0 else f"{settings.kafka_topic}-r{r}"
        relay_s.append(relay_once(settings, topic, f"bench-relay-{topic}"))
        bare_s.append(bare_once(settings, f"{settings.kafka_topic}-bare{r}", messages))
    gc.unfreeze()
    rounds = [round(b / r, 3) for r, b in zip(relay_s, bare_s, strict=True)]
    # Best of the rounds on each side: load from other processes only ever adds time.
    stage = Stage(
        "relay (ledger → Kafka)", len(messages), min(relay_s),
        "bare kafka-python producer, same messages", min(bare_s),
        extra={"rounds": ROUNDS, "ratio_per_round": rounds, "relay_batch": RELAY_BATCH},
    )  # fmt: skip
    return stage, f"{settings.kafka_topic}-bare0"


def bench_projector(settings: Settings, bare_topic: str, events: int) -> Stage:
    """The Kafka projector draining the relay's topic vs bare consume + columnar insert."""
    from tutorledger.consumers.kafka_projector import KafkaProjector, stream_position
    from tutorledger.infra.clickhouse import open_projection_store
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.kafka import make_consumer, make_producer
    from tutorledger.projections.schema import migrate

    ledger = open_ledger(settings)
    head = int(ledger.recorder.max_notification_id() or 0)
    ledger.close()
    store = open_projection_store(settings)
    migrate(store)
    consumer = make_consumer(settings, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    consumer.subscribe([settings.kafka_topic])
    dlq = make_producer(settings)
    projector = KafkaProjector(consumer, store, dlq, settings.kafka_dead_letter_topic, 5000)
    while not consumer.assignment():  # join the group before timing (a join takes seconds)
        consumer.poll(timeout_ms=200)
    consumer.seek_to_beginning()
    start = time.perf_counter()
    while stream_position(store) < head:
        projector.step()
    seconds = time.perf_counter() - start
    consumer.close()
    dlq.close()
    baseline = bare_consume_insert(settings, bare_topic, store, events)
    store.close()
    return Stage("projector (Kafka → ClickHouse)", events, seconds, "bare consume + insert",
                 baseline)  # fmt: skip


def bare_consume_insert(settings: Settings, topic: str, store: Any, events: int) -> float:
    import json

    from kafka import KafkaConsumer, TopicPartition

    from tutorledger.projections.rows import COLUMNS, event_row

    store.execute("CREATE TABLE IF NOT EXISTS bare_rows AS ledger_events")
    bare = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, consumer_timeout_ms=2000)
    parts = [TopicPartition(topic, p) for p in sorted(bare.partitions_for_topic(topic) or [])]
    bare.assign(parts)
    bare.seek_to_beginning()
    got = 0
    start = time.perf_counter()
    while got < events:
        batch = [r for part in bare.poll(timeout_ms=500, max_records=5000).values()
                 for r in part]  # fmt: skip
        rows = [event_row(d.pop("position"), d) for d in (json.loads(r.value) for r in batch)]
        store.insert("bare_rows", COLUMNS, rows)
        got += len(batch)
    seconds = time.perf_counter() - start
    bare.close()
    return seconds


def bench_stream(store_url: str, bootstrap: str, clickhouse: str, size: str,
                 workdir: Path) -> list[Stage]:  # fmt: skip
    """Relay, projector, then lag on the ClickHouse server and on chdb (own ledgers)."""
    tag = uuid.uuid4().hex[:8]
    server = clickhouse.rsplit("/", 1)[0]  # databases of their own: earlier stages wrote marks
    settings = stream_settings(store_url, bootstrap, f"{server}/stream_{tag}", tag)
    on_topic(settings, settings.kafka_topic)
    relay, bare_topic = bench_relay(settings)
    stages = [relay, bench_projector(settings, bare_topic, relay.events)]
    for backend in (f"{server}/lag_{tag}", f"chdb://{workdir}/lag-chdb"):
        stages.append(sustained_lag(bootstrap, backend, workdir, seconds=LAG_SECONDS[size]))
    return stages
