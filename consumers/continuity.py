"""Continuity of a migrated ledger: its first entries name the old chain's heads.

`links` reads each district's first event of a ledger: for a migrated ledger, the
`ledger.migrated` marker with the old head hash, event count and last position (covered by
the new chain). `check` is the auditor's step: recompute the old ledger's chains from its
events (the stored hashes are not trusted) and compare each district's recomputed head and
count with what the new ledger recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tutorledger.domain.errors import MigrationIncomplete, SourceEmpty
from tutorledger.domain.ledger import Ledger
from tutorledger.domain.migration import MIGRATION_EVENT_TYPE
from tutorledger.infra.eventstore import legacy
from tutorledger.infra.eventstore.audit import chain_scan, envelope_of, verify_chain


def links(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """District → the marker's payload, for districts whose chain opens with one."""
    scan = chain_scan(ledger.recorder)
    found: dict[str, dict[str, Any]] = {}
    for district in legacy.heads(ledger):
        first = scan.rows(district, 0, 2**62, 1)
        if not first or first[0].stored is None:
            continue
        try:
            envelope = envelope_of(ledger.mapper, first[0].stored)
        except Exception:  # verify reports undecodable rows; here it simply is no link
            continue
        if envelope.get("type") == MIGRATION_EVENT_TYPE:
            found[district] = dict(envelope["payload"])
    return found


def unfinished(ledger: Ledger) -> bool:
    """A target `migrate-ledger` started filling and has not finished."""
    state = legacy.read_state(ledger)
    return bool(state) and "completed_at" not in state


UNFINISHED = (
    "this ledger is an unfinished migration: run the same `tutorledger migrate-ledger "
    "--from … --to …` again to finish it, then start this process again"
)


def refuse_unfinished(ledger: Ledger) -> None:
    """Raise `MigrationIncomplete` for a half-filled target: the API, the relay and the
    projectors check at startup, so a partial ledger is never served or published as whole."""
    if unfinished(ledger):
        raise MigrationIncomplete(UNFINISHED)


def refuse_unfinished_store(url: str) -> None:
    """`refuse_unfinished` for a process that does not otherwise open the ledger (the Kafka
    projector): the store is opened read-only and closed again. No SQLite file: no ledger,
    nothing to refuse. A store that cannot be reached raises `Unavailable`."""
    try:
        ledger = legacy.open_store(url, read_only=True)
    except SourceEmpty:
        return
    try:
        refuse_unfinished(ledger)
    finally:
        ledger.close()


@dataclass(frozen=True)
class Link:
    """One district: the old chain's recomputed head and count beside what the new recorded."""

    district_id: str
    old_head: str | None
    old_events: int
    recorded_head: str | None
    recorded_events: int | None

    @property
    def ok(self) -> bool:
        return self.old_head is not None and (self.old_head, self.old_events) == (
            self.recorded_head,
            self.recorded_events,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "old_head": self.old_head,
            "old_events": self.old_events,
            "recorded_head": self.recorded_head,
            "recorded_events": self.recorded_events,
        }


def check(
    old: Ledger,
    new: Ledger,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[bool, str | None, list[Link]]:
    """(ok, problem of the old chain or None, one Link per district of either ledger)."""
    report = verify_chain(old.recorder, old.mapper, on_start=on_start, on_progress=on_progress)
    if not report.ok:
        return False, f"old chain broken at {report.first_bad_position} ({report.problem})", []
    counts, recorded = legacy.heads(old), links(new)
    result = []
    for district in sorted(set(counts) | set(recorded)):
        head = report.heads.get(district)
        mark = recorded.get(district, {})
        result.append(
            Link(
                district,
                head[1] if head else None,
                counts[district].events if district in counts else 0,
                mark.get("previous_head"),
                mark.get("previous_events"),
            )
        )
    return all(link.ok for link in result), None, result
