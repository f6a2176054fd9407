"""Wires the adapters a process needs; built by entry points, held on app.state."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent, TrackingRecorder

from tutorledger.consumers.continuity import refuse_unfinished
from tutorledger.consumers.kafka_projector import stream_position
from tutorledger.consumers.projector import LedgerFollower
from tutorledger.consumers.rebuild import fill_missing_read_models
from tutorledger.consumers.relay import relay_position
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.eventstore.disclosures import DisclosureLog
from tutorledger.infra.eventstore.key_usage import KeyUsage, ThrottledUse
from tutorledger.infra.eventstore.recorders import store_of
from tutorledger.infra.eventstore.signouts import SignOuts
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.keys import KeyStore
from tutorledger.infra.settings import Settings
from tutorledger.projections.answer_cache import AnswerCache
from tutorledger.projections.schema import migrate

# One stored event joined with its index row: position, district, chain hash, event.
ChainedEvent = tuple[int, str | None, str | None, StoredEvent | None]


class StoreReads(Protocol):
    """What the HTTP routes read from the event store beside the Ledger's own calls."""

    def head(self, district_id: str, as_of: int | None = None) -> tuple[int, str] | None:
        """(position, chain hash) of the district's last event at or below `as_of`."""
        ...

    def chained_events(
        self, district_id: str | None, after: int, limit: int, originator_id: UUID | None = None
    ) -> list[ChainedEvent]:
        """Stored events with their index rows, in position order."""
        ...

    def sessions_of(self, token: str) -> list[UUID]:
        """The sessions (and grades) linked to a student token, in ledger order."""
        ...


class MetadataProbe(Protocol):
    """What readiness needs of a Kafka client: the cluster's topics, and closing it."""

    def topics(self) -> set[str]: ...

    def close(self) -> None: ...


@dataclass
class Runtime:
    """The ledger, the projection store and (embedded mode) the in-process projector."""

    settings: Settings
    ledger: Ledger
    projections: ProjectionStore
    keys: KeyStore | None
    follower: LedgerFollower | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _sync_lock: threading.Lock = field(default_factory=threading.Lock)
    _tracking: TrackingRecorder | None = None
    _probe: MetadataProbe | None = None
    _disclosures: DisclosureLog | None = None
    _signouts: SignOuts | None = None

    @classmethod
    def build(cls, settings: Settings, keys: KeyStore | None = None) -> Runtime:
        ledger = open_ledger(settings)
        try:  # a half-migrated ledger must not pass for a finished one
            refuse_unfinished(ledger)
        except Exception:
            ledger.close()
            raise
        if keys is not None:  # `keys list` shows when each key was last used
            keys.on_use = ThrottledUse(KeyUsage(ledger.recorder).record).touch
        projections = open_projection_store(settings)
        migrate(projections)
        follower = None
        if settings.embedded_stream:
            fill_missing_read_models(ledger, projections)
            follower = LedgerFollower(
                ledger,
                projections,
                batch_size=settings.projector_batch_size,
                poll_seconds=settings.projector_poll_seconds,
            )
        answers = AnswerCache(projections, settings.answer_cache_rows)
        return cls(settings, ledger, answers, keys, follower)

    @property
    def disclosures(self) -> DisclosureLog:
        """The disclosure log, in the event store's database (tables made on first use)."""
        if self._disclosures is None:
            self._disclosures = DisclosureLog(self.ledger.recorder)
        return self._disclosures

    @property
    def store(self) -> StoreReads:
        """The event store's reads, typed: both recorders are checked against the port."""
        return store_of(self.ledger)

    def chain_head(self, district_id: str, position: int) -> tuple[int, str] | None:
        """(position, chain hash) of the district's last event at or below `position`."""
        return self.store.head(district_id, position)

    @property
    def signouts(self) -> SignOuts:
        """Signed-out dashboard sessions, in the event store's database (made on first use)."""
        if self._signouts is None:
            self._signouts = SignOuts(self.ledger.recorder)
        return self._signouts

    def start(self) -> None:
        """Start following the ledger in the background (embedded mode only)."""
        if self.follower is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._follow, name="projector", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        assert self.follower is not None
        self.follower.run(self._stop, lock=self._sync_lock)

    def sync(self) -> int:
        """Projected position after catching up (embedded: read-your-writes)."""
        if self.follower is None:
            return stream_position(self.projections)
        with self._sync_lock:
            self.follower.catch_up()
            return self.follower.position

    def projected_position(self) -> int:
        """Position up to which projections are complete (Kafka mode: every partition's mark)."""
        if self.follower is not None:
            return self.follower.position
        return stream_position(self.projections)

    def relay_position(self) -> int:
        """Where the Kafka relay has got to, read from the event store (Kafka mode)."""
        if self._tracking is None:
            self._tracking = self.ledger.factory.tracking_recorder()
        return relay_position(self._tracking)

    def stream_reachable(self) -> bool:
        """Kafka answers a metadata request (Kafka mode)."""
        from tutorledger.infra.kafka import make_probe

        try:
            if self._probe is None:
                self._probe = make_probe(self.settings)
            return bool(self._probe.topics())
        except Exception:
            self._close_probe()
            return False

    def _close_probe(self) -> None:
        """Close the metadata client before dropping it: an open one keeps reconnecting."""
        probe, self._probe = self._probe, None
        if probe is not None:
            with contextlib.suppress(Exception):
                probe.close()

    def following(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ledger_head(self) -> int:
        return int(self.ledger.recorder.max_notification_id() or 0)

    def swap_projections(self, swap: Callable[[], int]) -> int:
        """Run `swap` (which replaces projection tables and returns the position they hold)
        with the in-process projector and read-your-writes syncs held still, then resume."""
        with self._sync_lock:
            position = swap()
            if self.follower is not None:
                self.follower.position = position
            return position

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close_probe()
        self.projections.close()
        self.ledger.close()
