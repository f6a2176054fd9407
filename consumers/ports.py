"""What the consumers read from the event store, as ports both recorders implement.

Declared here, where they are used; `store_of` hands over the ledger's recorder typed as
ours, so mypy checks each assignment to a port against the SQLite and PostgreSQL recorders.
"""

from __future__ import annotations

from typing import Protocol


class PageReader(Protocol):
    """The store's bulk read: positions and raw stored states, no per-event objects."""

    def event_states(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """(position, stored state) of the next `limit` events after position `after`."""
        ...


class ChainHeads(Protocol):
    """A district's chain head as the ledger index holds it."""

    def head(self, district_id: str, as_of: int | None = None) -> tuple[int, str] | None:
        """(position, chain hash) of the district's last event at or below `as_of`."""
        ...
