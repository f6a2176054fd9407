"""Relay: ledger → Kafka. The store's notification log is the outbox.

Messages carry the published form of each event: the student's token, never the student
id or any free text (those stay sealed in the event store). Each batch is produced (key =
district/session so a session stays ordered in one partition), followed by a watermark on
every partition, flushed, and only when the broker has acknowledged all of it is the relay's
position advanced — durably, in the event store. A crash anywhere re-sends a tail:
at-least-once, and every sink is idempotent by ledger position.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder

from tutorledger.consumers.projector import decode
from tutorledger.domain.envelope import canonical_json
from tutorledger.domain.ledger import Ledger
from tutorledger.domain.privacy import public_form
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


def relay_position(tracking: TrackingRecorder, name: str = RELAY_NAME) -> int:
    return int(tracking.max_tracking_id(name) or 0)


class Relay:
    """Moves ledger events to the topic in position order; tracks what the broker acked."""

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
        self.ledger = ledger
        self.producer = producer
        self.topic = topic
        self.tracking = tracking
        self.batch_size = batch_size
        self.flush_timeout = flush_timeout
        self.name = name
        self.position = relay_position(tracking, name)
        partitions = producer.partitions_for(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic!r} has no partitions (does it exist?)")
        self.partitions = sorted(partitions)

    def step(self) -> int:
        """Relay one batch; returns how many ledger events the broker acknowledged."""
        notifications = self.ledger.recorder.select_notifications(
            start=self.position + 1, limit=self.batch_size
        )
        if not notifications:
            return 0
        futures = []
        for n in notifications:
            event = public_form(decode(self.ledger, n))  # token only: no id, no free text
            futures.append(
                self.producer.send(
                    self.topic,
                    key=message_key(event),
                    value=canonical_json({**event, "position": n.id}),
                    headers=message_headers(event, n.id),
                )
            )
        last = int(notifications[-1].id)
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
        return len(notifications)

    def run(self, stop: threading.Event, poll_seconds: float = 0.2) -> None:
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
