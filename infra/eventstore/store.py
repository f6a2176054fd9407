"""Event store wiring: eventsourcing recorders extended with the ledger index.

The index sits beside the stored events and is written in the same transaction:
one row per stored event with its global position, the emitter's `event_id`
(unique: the idempotency key), the district, the body digest and the district's
hash-chain value. Appends are serialised by the store (SQLite's single writer,
PostgreSQL's table lock), so each district's chain is extended in commit order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.codec import canonical_json
from tutorledger.infra.eventstore.crypto import AesGcmCipher
from tutorledger.infra.eventstore.erasure_journal import FileErasureJournal
from tutorledger.infra.eventstore.ledger_index import GENESIS_HASH, chain_hash
from tutorledger.infra.eventstore.recorders import ledger_recorder
from tutorledger.infra.settings import Settings

__all__ = ["GENESIS_HASH", "chain_hash", "open_ledger", "store_env"]
log = logging.getLogger(__name__)
PG_RECORDERS = "tutorledger.infra.eventstore.postgres"
SQLITE_RECORDERS = "tutorledger.infra.eventstore.sqlite"
# The library's stored-event format, written and read in C (infra/eventstore/codec.py).
MAPPER = {"MAPPER_TOPIC": "tutorledger.infra.eventstore.codec:OrjsonMapper"}


def store_env(url: str) -> dict[str, str]:
    """Translate our store URL into the eventsourcing library's configuration."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url.removeprefix("sqlite://")
        path = path[1:] if path.startswith("/./") or path.startswith("//") else path
        if path not in (":memory:", "/:memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": f"{SQLITE_RECORDERS}:SQLiteLedgerRecorder",
            **MAPPER,
        }
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parsed.path.lstrip("/") or "ledger",
        "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parsed.port or 5432),
        "POSTGRES_USER": unquote(parsed.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parsed.password or ""),
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "4",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "APPLICATION_RECORDER_TOPIC": f"{PG_RECORDERS}:PostgresLedgerRecorder",
        "TRACKING_RECORDER_TOPIC": f"{PG_RECORDERS}:PostgresLedgerTrackingRecorder",
        **MAPPER,
    }


def open_ledger(settings: Settings) -> Ledger:
    """Build the Ledger application on the configured store (creating tables if needed)."""
    return Ledger(
        env=store_env(settings.event_store),
        cipher=AesGcmCipher(),
        index_of=ledger_recorder,
        encode=canonical_json,
        pause=logged_pause,
        erasures=FileErasureJournal(settings.erasure_journal_path),
    )


def logged_pause(seconds: float) -> None:
    """Wait after a lost write race, saying so: a steady stream of these lines means
    writers in several processes keep colliding (the same new students, the same sessions)."""
    log.info("write race lost; reading again", extra={"wait_ms": round(seconds * 1000, 1)})
    time.sleep(seconds)
