"""Embedded projector: follows the ledger's notification log into ClickHouse.

Its tracking position is the highest `position` stored in `ledger_events`, which each
batch writes last (after the read models, see projections.writer): a batch replayed after
a crash in between is skipped where it already landed, so nothing is lost or counted twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson

from tutorledger.consumers.continuity import refuse_unfinished
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.clickhouse import ClusterStore, ProjectionStore
from tutorledger.projections.rows import event_row
from tutorledger.projections.writer import ReadModelWriter

log = logging.getLogger(__name__)


def projected_position(store: ProjectionStore, table: str = "ledger_events") -> int:
    """Highest ledger position present in the projections (0 when empty)."""
    rows = store.execute(f"SELECT max(position) FROM {table}")
    return int(rows[0][0] or 0) if rows else 0


def decode(ledger: Ledger, notification: Any) -> dict[str, Any]:
    """The canonical envelope carried by a stored domain event."""
    event: Any = ledger.mapper.to_domain_event(notification)
    envelope: dict[str, Any] = event.envelope
    return envelope


def decode_state(ledger: Ledger, state: bytes) -> dict[str, Any]:
    """The envelope inside a stored event's state, for bulk replays: the mapper's cipher and
    compressor, then plain JSON. The envelope is stored as plain JSON (the transcoder's typed
    values sit outside it), so orjson reads exactly what the transcoder would, in C and
    without building the domain event object (rebuild tests compare both paths)."""
    mapper: Any = ledger.mapper
    if mapper.cipher:
        state = mapper.cipher.decrypt(state)
    if mapper.compressor:
        state = mapper.compressor.decompress(state)
    envelope: dict[str, Any] = orjson.loads(state)["envelope"]
    return envelope


def state_decoder(ledger: Ledger) -> Callable[[bytes], dict[str, Any]]:
    """`decode_state` for one ledger, its cipher and compressor looked up once: with
    neither (the stored states are plain JSON), a bare C parse per event."""
    mapper: Any = ledger.mapper
    if mapper.cipher or mapper.compressor:
        return lambda state: decode_state(ledger, bytes(state))
    loads = orjson.loads
    return lambda state: loads(state)["envelope"]


class LedgerFollower:
    """Pulls new ledger events in batches and inserts them; SQLite has no push, so it polls.

    Refuses (`MigrationIncomplete`) a ledger `migrate-ledger` has not finished filling.
    """

    def __init__(
        self,
        ledger: Ledger,
        store: ProjectionStore,
        batch_size: int = 5000,
        poll_seconds: float = 0.2,
        table: str = "ledger_events",
    ) -> None:
        refuse_unfinished(ledger)
        if isinstance(store, ClusterStore):
            # Its tracking position is the highest projected position, which one atomic
            # block per batch guarantees on one node only: across shards a batch can land on
            # one shard and not another. A cluster is fed by Kafka projectors instead.
            raise ValueError("a sharded ClickHouse cluster needs the Kafka stream (kafka://…)")
        self.ledger = ledger
        self.store = store
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.table = table
        self.writer = ReadModelWriter(store)
        self.position: int = projected_position(store, table)
        self.last_error: str | None = None

    def step(self) -> int:
        """Project one batch; returns how many events it inserted."""
        notifications = self.ledger.recorder.select_notifications(
            start=self.position + 1, limit=self.batch_size
        )
        if not notifications:
            return 0
        rows = [event_row(n.id, decode(self.ledger, n)) for n in notifications]
        self.writer.write(rows, raw_table=self.table)
        self.position = int(notifications[-1].id)
        return len(rows)

    def catch_up(self) -> int:
        """Project until the ledger has nothing newer; returns the events inserted."""
        total = 0
        while count := self.step():
            total += count
        return total

    def run(
        self,
        stop: threading.Event,
        lock: threading.Lock | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        """Follow the ledger until `stop` is set; errors are logged and retried.

        `lock` is held around each step so a caller can run its own catch-up or pause the
        follower (the API's read-your-writes sync and the rebuild swap).
        """
        guard = lock if lock is not None else contextlib.nullcontext()
        while not stop.is_set():
            try:
                with guard:
                    inserted = self.step()
                self.last_error = None
            except Exception as exc:  # keep following: the store or ClickHouse may come back
                self.last_error = str(exc)
                log.exception("projection step failed; retrying")
                stop.wait(retry_seconds)
                continue
            if inserted < self.batch_size:
                stop.wait(self.poll_seconds)
