"""The relay's fast path (page reads of raw states, orjson) publishes exactly what the
domain-event path would, never a student id or ciphertext, to the partition kafka-python's
own partitioner would pick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.consumers.projector import decode
from tutorledger.consumers.relay import Relay, key_partition, message_headers, message_key
from tutorledger.domain.privacy import public_form
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings


class Cluster:
    """The metadata kafka-python's partitioner reads, for one topic."""

    def __init__(self, partitions: tuple[int, ...]) -> None:
        self.partitions = set(partitions)

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


class Producer:
    """Only what the relay's constructor asks of a producer (encoding sends nothing)."""

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=1, max_value=24))
def test_partition_matches_kafka_python(key: bytes, count: int) -> None:
    partitions = tuple(range(count))
    expected = DefaultPartitioner().partition("t", key, key, None, None, Cluster(partitions))
    assert key_partition(key, partitions) == expected


def test_pages_publish_the_public_form(tmp_path: Path) -> None:
    ledger = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/l.db"))
    spec = DistrictSpec(district_id="d1", students=60, days=2, duplicate_rate=0.0)
    ledger.record_events(generate(spec).events[:400])
    relay = Relay(ledger, Producer(), "t", ledger.factory.tracking_recorder(), batch_size=64)
    messages: list[tuple[int, Any]] = []
    while page := relay.encode(messages[-1][0] if messages else 0):
        messages.extend(page)
    notes = ledger.recorder.select_notifications(start=1, limit=10_000)
    assert [p for p, _ in messages] == [n.id for n in notes]
    student_ids = {e["payload"].get("student_id") for e in generate(spec).events} - {None}
    assert student_ids
    for (position, (partition, key, value, headers)), note in zip(messages, notes, strict=True):
        event = public_form(decode(ledger, note))
        assert json.loads(value) == {**event, "position": position}
        assert key == message_key(event) and headers == message_headers(event, position)
        assert partition == key_partition(key, (0, 1, 2))
        text = value.decode()
        assert '"sealed"' not in text and '"student_id"' not in text
        assert not any(s in text for s in student_ids)
    assert any(b'"student_token"' in v for _, (_, _, v, _) in messages)
    ledger.close()
