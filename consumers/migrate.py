"""`migrate-ledger`: a plaintext-format ledger re-appended, event by event, into a new store.

The ledgers written before sealed storage kept `student_id`, `topic` and `comment` in clear
inside the chained rows. Such a ledger cannot be sealed in place (the chain covers the
plaintext), so it is copied: each district's new chain opens with a `ledger.migrated` event
naming the old chain's head hash and event count, then every old event follows in the old
order through the normal write path (`record_events` for sessions: validation, lifecycle,
tokens, keys, keyed idempotency digests; school updates verbatim), with its event id and
timestamps. The old chain is re-verified row by row while it is read, so a migration never
vouches for altered history. The source is read in pages and never written.

Crash safety: the target records which source it is being filled from ('source') and, last,
'completed_at'. A re-run on an unfinished target of the same source resumes after the
source position of the target's latest event (each page commits whole); any other non-empty
target is refused. `verify` reports an unfinished target as broken.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tutorledger.consumers.ports import ChainHeads
from tutorledger.domain.envelope import EventType
from tutorledger.domain.errors import (
    MigrationError,
    MigrationRejected,
    SourceChainBroken,
    SourceEmpty,
    SourceSealed,
    TargetNotEmpty,
)
from tutorledger.domain.ledger import Ledger
from tutorledger.domain.migration import migration_envelope
from tutorledger.domain.privacy import SEALED_FIELD, TOKEN_FIELD
from tutorledger.domain.school import SCHOOL_EVENT_TYPE
from tutorledger.infra.eventstore import legacy
from tutorledger.infra.eventstore.audit import ChainRow, chain_scan, envelope_of
from tutorledger.infra.eventstore.ledger_index import GENESIS_HASH, chain_hash
from tutorledger.infra.eventstore.recorders import store_of

PAGE = 1000
SESSION_TYPES = frozenset(t.value for t in EventType)
Progress = Callable[[int], None]


@dataclass
class MigrationReport:
    """`migrated`: source events appended by this run; `resumed_after`: the source position
    an earlier, interrupted run had reached (0: a fresh start)."""

    total: int
    migrated: int = 0
    resumed_after: int = 0
    heads: dict[str, legacy.Head] = field(default_factory=dict)
    seconds: float = 0.0


def fingerprint(heads: dict[str, legacy.Head]) -> str:
    """Which old ledger a target is filled from: every district's head, count and position."""
    body = {d: [h.position, h.chain_hash, h.events] for d, h in sorted(heads.items())}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def markers(heads: dict[str, legacy.Head]) -> list[dict[str, Any]]:
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        migration_envelope(d, h.chain_hash, h.events, h.position, at)
        for d, h in sorted(heads.items())
    ]


def check_source(source: Ledger) -> dict[str, legacy.Head]:
    """The old ledger's heads, once it is known to be a plaintext ledger worth migrating."""
    old = legacy.heads(source)
    if not old:
        raise SourceEmpty("the source holds no ledger events")
    if students := legacy.key_rows(source):
        raise SourceSealed(
            f"the source's key table holds {students} student(s): it is sealed, or this version "
            "wrote sealed sessions into it; migrate-ledger copies plaintext ledgers only"
        )
    indexed = sum(h.events for h in old.values())
    if legacy.stored_count(source) != indexed:
        raise SourceChainBroken("the source has stored events without index rows (run verify)")
    return old


def refuse_foreign(target: Ledger) -> dict[str, str]:
    """The target's migration record, unless it holds anything but an unfinished migration."""
    state = legacy.read_state(target)
    if "completed_at" in state:
        raise TargetNotEmpty(f"the target holds a finished migration ({state['completed_at']})")
    if not state and (legacy.event_count(target) or legacy.key_rows(target)):
        raise TargetNotEmpty("the target already holds a ledger; give a new, empty store")
    return state


def open_target(url: str) -> Ledger:
    """The target, opened for writing only once a read-only look found it empty (or an
    unfinished migration): a refused store is left without so much as a new table."""
    try:
        probe = legacy.open_store(url, read_only=True)
    except SourceEmpty:  # no such SQLite file yet: a new target
        return legacy.open_store(url)
    try:
        refuse_foreign(probe)
    finally:
        probe.close()
    return legacy.open_store(url)


def prepare_target(target: Ledger, source: Ledger, old: dict[str, legacy.Head]) -> int:
    """Claim an empty target (or resume one this source started); returns the source
    position to continue after."""
    state, print_ = refuse_foreign(target), fingerprint(old)
    if state and state.get("source") != print_:
        raise TargetNotEmpty("the target holds an unfinished migration of another ledger")
    if not state:
        legacy.write_state(target, "source", print_)
    opening = markers(old)
    target.append_verbatim(opening)
    last = legacy.last_event_id(target)
    if last is None or str(last) in {m["event_id"] for m in opening}:
        return 0
    found = source.index.lookup_event_ids([last])
    if last not in found:
        raise TargetNotEmpty("the target's latest event is not from this source")
    return found[last][0]


def opened(row: ChainRow, source: Ledger, prev: dict[str, str]) -> dict[str, Any]:
    """The old event, once its chain hash is recomputed and matches."""
    try:
        assert row.stored is not None
        envelope = envelope_of(source.mapper, row.stored)
    except Exception as exc:  # an undecodable or missing row is a broken chain
        raise SourceChainBroken(f"event at position {row.position} cannot be read") from exc
    before = prev.get(row.district_id, GENESIS_HASH)
    computed = chain_hash(before, row.position, envelope)
    if envelope.get("district_id") != row.district_id or computed != row.chain_hash:
        raise SourceChainBroken(f"the old chain breaks at position {row.position}")
    prev[row.district_id] = computed
    payload = envelope.get("payload") or {}
    if envelope["type"] not in SESSION_TYPES | {SCHOOL_EVENT_TYPE} or (
        TOKEN_FIELD in payload or SEALED_FIELD in payload
    ):
        raise SourceSealed(f"event at position {row.position} is not in the plaintext format")
    return envelope


def append(target: Ledger, sessions: list[dict[str, Any]]) -> None:
    """Sessions through the normal write path; any refusal stops the migration."""
    if not sessions:
        return
    for outcome in target.record_events(sessions):
        if outcome.status == "rejected":
            code = outcome.error.code if outcome.error is not None else "rejected"
            raise MigrationRejected(
                f"event {outcome.event_id} was refused ({code}); nothing after it was migrated",
                {"event_id": outcome.event_id, "code": code},
            )
    sessions.clear()


def copy_page(rows: list[ChainRow], source: Ledger, target: Ledger, prev: dict[str, str]) -> None:
    """One page in source order: sessions batched, a school update appended in its place."""
    sessions: list[dict[str, Any]] = []
    for row in rows:
        envelope = opened(row, source, prev)
        if envelope["type"] == SCHOOL_EVENT_TYPE:
            append(target, sessions)
            target.append_verbatim([envelope])
        else:
            sessions.append(envelope)
    append(target, sessions)


def finish(target: Ledger, old: dict[str, legacy.Head]) -> None:
    """Mark the target finished once every district holds its old events plus the marker."""
    new = legacy.heads(target)
    for district, head in old.items():
        got = new.get(district)
        if got is None or got.events != head.events + 1:
            raise MigrationError(f"district {district}: the target's event count is off")
    legacy.write_state(target, "completed_at", datetime.now(UTC).isoformat())


def migrate(
    source: Ledger,
    target: Ledger,
    *,
    page: int = PAGE,
    on_start: Progress | None = None,
    on_progress: Progress | None = None,
) -> MigrationReport:
    """Copy the plaintext `source` into the empty (or half-filled by us) sealed `target`."""
    started = time.perf_counter()
    old = check_source(source)
    report = MigrationReport(total=sum(h.events for h in old.values()), heads=old)
    after = report.resumed_after = prepare_target(target, source, old)
    scan, upto = chain_scan(source.recorder), max(h.position for h in old.values())
    if on_start is not None:
        on_start(report.total)
    if on_progress is not None and after:
        on_progress(scan.count(None, after))
    prev = {d: _head_at(source, d, after) for d in old}
    while rows := scan.rows(None, after, upto, page):
        copy_page(rows, source, target, prev)
        after = rows[-1].position
        report.migrated += len(rows)
        if on_progress is not None:
            on_progress(len(rows))
    finish(target, old)
    report.seconds = time.perf_counter() - started
    return report


def _head_at(source: Ledger, district_id: str, position: int) -> str:
    """The old chain's hash of the district at `position` (where a resumed run continues)."""
    heads: ChainHeads = store_of(source)
    found = heads.head(district_id, position) if position else None
    return found[1] if found else GENESIS_HASH
