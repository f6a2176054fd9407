"""The ledger index rules shared by every store: chain hashes and index rows.

hash = sha256(prev_hash_hex ‖ "\n" ‖ canonical JSON of the event with its position);
each district's chain starts at GENESIS_HASH.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ProgrammingError, StoredEvent

from tutorledger.domain.batch import LedgerEntry
from tutorledger.infra.codec import canonical_json

GENESIS_HASH = "0" * 64
CHUNK = 500


def chain_hash(prev_hash: str, position: int, canonical: dict[str, Any]) -> str:
    """hash = sha256(prev_hash_hex ‖ "\\n" ‖ canonical JSON of the event with its position)."""
    record = {**canonical, "position": position}
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(record)).hexdigest()


def index_rows(
    stored_events: Sequence[StoredEvent],
    positions: Sequence[int],
    entries: Iterable[LedgerEntry],
    heads: dict[str, str],
) -> list[tuple[int, bytes, str, bytes, str]]:
    """Pair stored events with their ledger entries and extend each district's chain."""
    by_key = {(e.originator_id, e.originator_version): e for e in entries}
    rows = []
    for stored, position in zip(stored_events, positions, strict=True):
        entry = by_key.get((UUID(str(stored.originator_id)), stored.originator_version))
        if entry is None:
            raise ProgrammingError("every stored event needs a ledger entry (event_id, chain)")
        digest = chain_hash(heads[entry.district_id], position, entry.canonical)
        heads[entry.district_id] = digest
        rows.append((position, entry.event_id.bytes, entry.district_id, entry.digest, digest))
    return rows
