"""The ledger index rules shared by every store: chain hashes and index rows.

hash = sha256(prev_hash_hex ‖ "\n" ‖ canonical JSON of the event with its position);
each district's chain starts at GENESIS_HASH.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ProgrammingError, StoredEvent

from tutorledger.domain.batch import LedgerEntry
from tutorledger.infra.eventstore.codec import canonical_json

GENESIS_HASH = "0" * 64
CHUNK = 500


def chain_hash(prev_hash: str, position: int, canonical: dict[str, Any]) -> str:
    """hash = sha256(prev_hash_hex ‖ "\\n" ‖ canonical JSON of the event with its position)."""
    record = {**canonical, "position": position}
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(record)).hexdigest()


def index_rows(
    stored_events: Sequence[StoredEvent],
    positions: Sequence[int],
    entries: Sequence[LedgerEntry],
    heads: dict[str, str],
) -> list[tuple[int, bytes, str, bytes, str]]:
    """Pair stored events with their ledger entries (given in the same order) and extend
    each district's chain."""
    if len(entries) != len(stored_events):
        raise ProgrammingError("every stored event needs a ledger entry (event_id, chain)")
    rows = []
    for stored, position, entry in zip(stored_events, positions, entries, strict=True):
        if (entry.originator_id, entry.originator_version) != (
            stored.originator_id,
            stored.originator_version,
        ):
            raise ProgrammingError("ledger entries must follow the stored events' order")
        digest = chain_hash(heads[entry.district_id], position, entry.canonical)
        heads[entry.district_id] = digest
        rows.append((position, entry.event_id.bytes, entry.district_id, entry.digest, digest))
    return rows
