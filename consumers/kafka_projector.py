"""Projector: Kafka → ClickHouse, batched, idempotent, offsets committed after the insert.

Redelivery is harmless: the read models skip positions they already hold and the raw
rows are keyed by ledger position (see projections.writer). Messages that cannot be
decoded or validated (including any that carry a student id or free text: only the
published form is accepted) go to the dead-letter topic and the `dead_letters` table with
their reason before the offsets move past them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from tutorledger.consumers.progress import StallWatch
from tutorledger.domain.errors import InvalidEvent, ProjectorStalled
from tutorledger.domain.privacy import PERSONAL_FIELDS, SEALED_FIELD
from tutorledger.domain.published import parse_published
from tutorledger.domain.upcast import upcast
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.infra.kafka import WATERMARK_TYPE
from tutorledger.projections.rows import event_row
from tutorledger.projections.writer import ReadModelWriter

log = logging.getLogger(__name__)
WATERMARK_COLUMNS = ("partition", "partitions", "position", "recorded_at")
DEAD_LETTER_COLUMNS = ("topic", "partition", "offset", "reason", "raw", "recorded_at")


@dataclass
class Batch:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    marks: list[tuple[Any, ...]] = field(default_factory=list)
    dead: list[tuple[Any, str]] = field(default_factory=list)  # (record, reason)


def classify(record: Any, batch: Batch, now: datetime) -> None:
    """Sort one Kafka record into a projection row, a watermark or a dead letter."""
    try:
        doc = json.loads(record.value)
        if not isinstance(doc, dict):
            raise InvalidEvent("message is not a JSON object")
        if doc.get("type") == WATERMARK_TYPE:
            mark = (record.partition, int(doc["partitions"]), int(doc["position"]), now)
            batch.marks.append(mark)
            return
        position = doc.pop("position", None)
        if not isinstance(position, int) or isinstance(position, bool) or position < 1:
            raise InvalidEvent("missing or invalid ledger position")
        batch.rows.append(event_row(position, parse_published(upcast(doc))))
    except (ValueError, KeyError, TypeError, ValidationError, InvalidEvent) as exc:
        reason = exc.message if isinstance(exc, InvalidEvent) else f"{type(exc).__name__}: {exc}"
        batch.dead.append((record, reason[:1000]))


def redact(value: bytes | None) -> bytes | None:
    """A refused message minus any personal fields, before it is kept as a dead letter."""
    try:
        doc = json.loads(value or b"")
    except ValueError:
        return value
    payload = doc.get("payload") if isinstance(doc, dict) else None
    if not isinstance(payload, dict):
        return value
    personal = {f for fields in PERSONAL_FIELDS.values() for f in fields} | {SEALED_FIELD}
    if not personal & set(payload):
        return value
    doc["payload"] = {k: ("<redacted>" if k in personal else v) for k, v in payload.items()}
    return json.dumps(doc).encode()


class KafkaProjector:
    """One member of the projector consumer group."""

    def __init__(
        self,
        consumer: Any,
        store: ProjectionStore,
        dead_letter_producer: Any,
        dead_letter_topic: str,
        batch_size: int = 5000,
        batch_seconds: float = 0.5,
        stall_seconds: float = 120.0,
    ) -> None:
        self.consumer = consumer
        self.store = store
        self.dlq = dead_letter_producer
        self.dlq_topic = dead_letter_topic
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.projected = 0
        self.dead_lettered = 0
        self.writer = ReadModelWriter(store)
        self.watch = StallWatch(stall_seconds)
        self.rewind_pending = False

    def poll_batch(self) -> list[Any]:
        """Collect up to batch_size records or batch_seconds; an idle poll ends a batch early."""
        records: list[Any] = []
        deadline = time.monotonic() + self.batch_seconds
        while len(records) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            got = self.consumer.poll(
                timeout_ms=int(min(remaining, 0.25) * 1000),
                max_records=self.batch_size - len(records),
            )
            fresh = [r for part in got.values() for r in part]
            if not fresh and records:
                break
            records.extend(fresh)
        return records

    def step(self, stop: threading.Event | None = None) -> int:
        """Project one batch and commit its offsets; returns the records handled."""
        if self.rewind_pending:
            self.rewind()
        records = self.poll_batch()
        self._check_progress()
        if not records:
            return 0
        batch = Batch()
        now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
        for record in records:
            classify(record, batch, now)
        self._dead_letter(batch, now)
        self._insert(batch, stop)
        self.consumer.commit()
        self.projected += len(batch.rows)
        return len(records)

    def rewind(self) -> None:
        """Seek every assigned partition back to its committed offset.

        A poll moves the consumer's position past the records it returns, committed or not:
        after a step that failed (a poll that raised halfway through a batch, a commit refused
        during a rebalance) the next poll would start after records never inserted, and the
        next commit would skip them for good. Until this succeeds no batch is polled.
        """
        for tp in sorted(self.consumer.assignment()):
            committed = self.consumer.committed(tp, timeout_ms=30_000)
            if committed is None:
                self.consumer.seek_to_beginning(tp)  # where a new member of the group starts
            else:
                self.consumer.seek(tp, committed)
        self.rewind_pending = False

    def _check_progress(self) -> None:
        """Raise `ProjectorStalled` when an assigned partition with records yields none."""
        stalls = self.watch.observe(self.consumer)
        if not stalls:
            return
        worst = max(stalls, key=lambda s: s.seconds)
        detail = [vars(s) for s in stalls]
        log.error("projector stalled", extra={"stalled": detail})
        raise ProjectorStalled(
            f"partition {worst.partition} stays at offset {worst.position} of "
            f"{worst.end_offset} with no record for {worst.seconds:g} s",
            detail,
        )

    def _dead_letter(self, batch: Batch, now: datetime) -> None:
        if not batch.dead:
            return
        rows = []
        for record, reason in batch.dead:
            value = redact(record.value)
            source = f"{record.topic}/{record.partition}/{record.offset}"
            headers = list(record.headers or []) + [
                ("dlq_reason", reason.encode()),
                ("dlq_source", source.encode()),
            ]
            self.dlq.send(self.dlq_topic, key=record.key, value=value, headers=headers)
            raw = value.decode("utf-8", "replace") if value else ""
            rows.append((record.topic, record.partition, record.offset, reason, raw, now))
            log.warning("dead-lettered", extra={"source": source, "reason": reason})
        self.dlq.flush(timeout=60)
        self.store.insert("dead_letters", DEAD_LETTER_COLUMNS, rows)
        self.dead_lettered += len(rows)

    def _insert(self, batch: Batch, stop: threading.Event | None) -> None:
        """Insert until ClickHouse takes it; offsets are not committed before that."""
        delay = 0.5
        while True:
            try:
                self.writer.write(batch.rows)
                self.store.insert("stream_watermarks", WATERMARK_COLUMNS, batch.marks)
                return
            except Exception:
                log.exception("ClickHouse insert failed; retrying", extra={"rows": len(batch.rows)})
                if stop is not None and stop.wait(delay):
                    raise
                if stop is None:
                    time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step(stop)
            except ProjectorStalled:
                raise  # the process ends; its supervisor starts a fresh member
            except Exception:
                if stop.is_set():
                    break
                log.exception("projector step failed; uncommitted messages will be redelivered")
                self.rewind_pending = True
                stop.wait(2.0)


COMPLETE_PREFIX_SQL = """
SELECT count(), max(parts), min(p) FROM (
    SELECT partition, max(partitions) AS parts, max(position) AS p
    FROM stream_watermarks GROUP BY partition
)
"""


def stream_position(store: ProjectionStore) -> int:
    """Ledger position up to which Kafka-fed projections are complete (every partition's mark)."""
    rows = store.execute(COMPLETE_PREFIX_SQL)
    if not rows:
        return 0
    seen, partitions, low = rows[0]
    if not seen or int(seen) < int(partitions or 0):
        return 0
    return int(low or 0)
