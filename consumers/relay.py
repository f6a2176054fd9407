"""Relay: ledger → Kafka. The store's notification log is the outbox.

Messages carry the published form of each event: the student's token, never the student
id or any free text (those stay sealed in the event store). Each batch is produced (key =
district/session so a session stays ordered in one partition), followed by a watermark on
every partition, flushed, and only when the broker has acknowledged all of it is the relay's
position advanced — durably, in the event store. A crash anywhere re-sends a tail:
at-least-once, and every sink is idempotent by ledger position.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
from eventsourcing.persistence import Tracking, TrackingRecorder
from kafka.partitioner.default import murmur2

from tutorledger.consumers.continuity import refuse_unfinished
from tutorledger.consumers.ports import PageReader
from tutorledger.consumers.projector import decode_state
from tutorledger.domain.envelope import canonical_json
from tutorledger.domain.ledger import Ledger
from tutorledger.domain.privacy import public_form
from tutorledger.infra.eventstore.recorders import store_of
from tutorledger.infra.kafka import WATERMARK_TYPE

log = logging.getLogger(__name__)
RELAY_NAME = "kafka-relay"


def message_key(event: dict[str, Any]) -> bytes:
    """District + session (or school): one aggregate's events share a partition, in order."""
    subject = event.get("session_id") or f"school:{event.get('school_id', '')}"
    return f"{event['district_id']}/{subject}".encode()


def message_headers(event: dict[str, Any], position: int) -> list[tuple[str, bytes]]:
    return [
        ("event_id", str(event["event_id"]).encode()),
        ("type", str(event["type"]).encode()),
        ("schema_version", str(event["schema_version"]).encode()),
        ("position", str(position).encode()),
    ]


def published(ledger: Ledger, position: int, state: bytes) -> tuple[dict[str, Any], bytes]:
    """The published form of one stored state and its message value, decoded and encoded
    once each in C (orjson): no domain event object, no second JSON pass. Keys are sorted,
    so a re-sent tail carries the same bytes."""
    event = public_form(decode_state(ledger, bytes(state)))  # token only: no id, no free text
    value = orjson.dumps({**event, "position": position}, option=orjson.OPT_SORT_KEYS)
    return event, value


def relay_position(tracking: TrackingRecorder, name: str = RELAY_NAME) -> int:
    return int(tracking.max_tracking_id(name) or 0)


@functools.lru_cache(maxsize=1 << 16)
def key_partition(key: bytes, partitions: tuple[int, ...]) -> int:
    """The partition kafka-python's default partitioner (murmur2, as the Java client) picks
    for `key`; cached, as a session's events share a key and murmur2 is pure Python there."""
    return partitions[(int(murmur2(key)) & 0x7FFFFFFF) % len(partitions)]


Message = tuple[int, bytes, bytes, list[tuple[str, bytes]]]  # partition, key, value, headers


@dataclass
class Prefetch:
    """The page after `after`, read and encoded while the broker acknowledges the last one."""

    after: int
    page: Future[list[tuple[int, Message]]]


class Relay:
    """Moves ledger events to the topic in position order; tracks what the broker acked.

    A page of the ledger is read in one query, encoded, produced and flushed; while the
    broker acknowledges it the next page is read and encoded in a helper thread (nothing of
    it is sent before the acknowledgement, so a failed page is re-sent before any later one).
    A ledger `migrate-ledger` has not finished filling is refused (`MigrationIncomplete`)
    before anything is read or sent: consumers would take its partial history for the whole.
    """

    def __init__(
        self,
        ledger: Ledger,
        producer: Any,
        topic: str,
        tracking: TrackingRecorder,
        batch_size: int = 1000,
        flush_timeout: float = 60.0,
        name: str = RELAY_NAME,
    ) -> None:
        refuse_unfinished(ledger)
        self.ledger = ledger
        self.producer = producer
        self.topic = topic
        self.tracking = tracking
        self.batch_size = batch_size
        self.flush_timeout = flush_timeout
        self.name = name
        self.position = relay_position(tracking, name)
        self.reader: PageReader = store_of(ledger)
        partitions = producer.partitions_for(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic!r} has no partitions (does it exist?)")
        self.partitions = tuple(sorted(partitions))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-read")
        self._ahead: Prefetch | None = None

    def encode(self, after: int) -> list[tuple[int, Message]]:
        """The next page after `after` as (position, message) pairs."""
        out = []
        for position, state in self.reader.event_states(after, self.batch_size):
            event, value = published(self.ledger, position, state)
            key = message_key(event)
            headers = message_headers(event, position)
            out.append((position, (key_partition(key, self.partitions), key, value, headers)))
        return out

    def _next_page(self) -> list[tuple[int, Message]]:
        """The prefetched page when it is the one due and full; else a fresh read (a short
        prefetched page would hold back events appended since it was read)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.after == self.position:
            with contextlib.suppress(Exception):  # a failed read is retried right here
                page = ahead.page.result()
                if len(page) == self.batch_size:
                    return page
        return self.encode(self.position)

    def step(self) -> int:
        """Relay one batch; returns how many ledger events the broker acknowledged."""
        page = self._next_page()
        if not page:
            return 0
        futures = [
            self.producer.send(self.topic, partition=p, key=k, value=v, headers=h)
            for _, (p, k, v, h) in page
        ]
        last = int(page[-1][0])
        mark = canonical_json(
            {"type": WATERMARK_TYPE, "position": last, "partitions": len(self.partitions)}
        )
        for partition in self.partitions:
            futures.append(
                self.producer.send(
                    self.topic,
                    partition=partition,
                    key=b"__watermark__",
                    value=mark,
                    headers=[("type", WATERMARK_TYPE.encode())],
                )
            )
        if len(page) == self.batch_size:  # more is waiting: read it during the flush
            self._ahead = Prefetch(last, self._pool.submit(self.encode, last))
        self.producer.flush(timeout=self.flush_timeout)
        unplaced = sum(1 for f in futures if f.get(timeout=0).offset < 0)  # raises on error
        if unplaced:
            # Acknowledged as a duplicate of a batch the broker may never have stored (tansu
            # after a crash does this): `tutorledger repair` finds and fills what is missing.
            log.warning(
                "broker acknowledged records without an offset",
                extra={"records": unplaced, "from_position": self.position + 1, "to": last},
            )
        self.tracking.insert_tracking(Tracking(self.name, last))
        self.position = last
        return len(page)

    def run(self, stop: threading.Event, poll_seconds: float = 0.05) -> None:
        """Relay until `stop`; broker or store outages are retried, never skipped."""
        while not stop.is_set():
            try:
                sent = self.step()
            except Exception:
                log.exception("relay step failed; retrying from the tracked position")
                self.position = relay_position(self.tracking, self.name)
                stop.wait(2.0)
                continue
            if sent < self.batch_size:
                stop.wait(poll_seconds)
