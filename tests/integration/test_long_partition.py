"""A partition of thousands of stored batches on tansu with S3 storage (issue 27's stall).

The 30-minute soak stopped projecting with a million events to go and no error: tansu's S3
storage lists a partition's batch objects on every fetch, inside the fetch's wait, and
answers empty when the wait runs out. At kafka-python's default 500 ms wait a partition of
a few thousand batches was never read again. These tests build such a partition and check
that (1) the projector's consumer, as `make_consumer` configures it, reads to its end, and
(2) a consumer that gets nothing while its partition holds records is reported as stalled
(the projector then exits to be restarted) instead of sitting idle.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from faults import DurableBroker, start_or_skip
from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from waiting import wait_until

from tutorledger.consumers.progress import StallWatch
from tutorledger.infra.kafka import make_consumer
from tutorledger.infra.settings import Settings

BATCHES = 4200  # stored objects in the partition: about what the soak had at minute 30


@pytest.fixture(scope="module")
def long_partition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(bootstrap, topic): one partition holding BATCHES one-record batches."""
    broker = DurableBroker(tmp_path_factory.mktemp("long-partition"))
    try:
        start_or_skip("tansu on S3", lambda: (broker.start_storage(), broker.start()))
        topic = f"long-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        try:
            for i in range(BATCHES):
                producer.send(topic, value=str(i).encode(), partition=0)
                producer.flush()  # one stored batch object per record
        finally:
            producer.close()
        yield broker.bootstrap, topic
    finally:
        broker.stop()


def settings_for(bootstrap: str, topic: str, **extra: Any) -> Settings:
    return Settings(stream=f"kafka://{bootstrap}", kafka_topic=topic,
                    kafka_group=f"group-{uuid.uuid4().hex[:8]}", **extra)  # fmt: skip


def reached(consumer: Any, tp: TopicPartition, end: int, seen: list[int]) -> bool:
    for records in consumer.poll(timeout_ms=1000).values():
        seen.extend(r.offset for r in records)
    return bool(seen) and seen[-1] == end - 1


def test_projector_consumer_reads_a_long_partition_to_its_end(
    long_partition: tuple[str, str],
) -> None:
    bootstrap, topic = long_partition
    consumer = make_consumer(settings_for(bootstrap, topic))
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        consumer.seek(tp, BATCHES - 200)  # deep in the partition: the most listing per fetch
        seen: list[int] = []
        wait_until(lambda: reached(consumer, tp, BATCHES, seen), "the last record", 240)
        assert seen == list(range(BATCHES - 200, BATCHES))
    finally:
        consumer.close()


def test_a_consumer_fed_nothing_behind_its_end_is_reported_stalled(
    long_partition: tuple[str, str],
) -> None:
    """A fetch wait too short for the broker: empty answers, no error; the watch names it."""
    bootstrap, topic = long_partition
    consumer = make_consumer(settings_for(bootstrap, topic, kafka_fetch_wait_ms=100))
    tp = TopicPartition(topic, 0)
    watch = StallWatch(stall_seconds=5.0)
    try:
        consumer.assign([tp])
        consumer.seek(tp, BATCHES - 200)

        def stalled() -> Any:
            consumer.poll(timeout_ms=500)
            return watch.observe(consumer)

        stalls = wait_until(stalled, "the stall to be reported", 120)
        assert stalls[0].partition == 0
        assert stalls[0].position == BATCHES - 200
        assert stalls[0].end_offset == BATCHES
    finally:
        consumer.close()
