"""A ledger in the plaintext format of the versions before sealed storage: what the migration
tests and the `migrate-ledger` benchmark stage start from.

Rows are written as those versions wrote them: each session event's stored state is the
emitter's canonical envelope with `student_id`, `topic` and `comment` in clear, the index
digest is the unkeyed body digest and the chain runs over the plaintext; school updates are
recorded as they still are. Nothing of sealed storage exists afterwards: the key tables the
current recorder creates are dropped, so the store holds exactly the old tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any
from uuid import UUID

from tutorledger.domain.batch import LedgerEntry
from tutorledger.domain.envelope import EventType, body_digest, parse_envelope
from tutorledger.domain.errors import Rejection
from tutorledger.domain.school import SCHOOL_EVENT_TYPE
from tutorledger.domain.session import TutoringSession, session_key
from tutorledger.infra.eventstore.legacy import open_store

NEW_TABLES = ("student_sessions", "student_keys", "privacy_secrets")


def write_plaintext_ledger(
    url: str, events: Iterable[dict[str, Any]], batch: int = 500
) -> list[dict[str, Any]]:
    """Append `events` in the old format; returns the accepted ones (canonical), in order.
    Resends and events the lifecycle refuses are left out, as the old ledger did. An item
    {"type": "school.updated", "district_id", "school_id", "enrollment"} records a school
    update at that point."""
    ledger = open_store(url)
    sessions: dict[UUID, TutoringSession] = {}
    accepted: list[dict[str, Any]] = []
    seen: set[str] = set()
    pending: list[tuple[TutoringSession, LedgerEntry]] = []
    try:
        for raw in events:
            if raw.get("type") == SCHOOL_EVENT_TYPE:  # a school update between them
                _flush(ledger, pending)
                ledger.put_school(raw["district_id"], raw["school_id"], "A school",
                                  raw["enrollment"], date(2026, 1, 5))  # fmt: skip
                continue
            env = parse_envelope(raw)
            canonical = env.canonical()
            if canonical["event_id"] in seen:
                continue
            key = session_key(env.district_id, env.session_id)
            try:
                session = sessions.get(key)
                if session is None:
                    if env.type != EventType.REQUESTED:
                        continue
                    session = sessions[key] = TutoringSession.request(canonical)
                else:
                    session.record(EventType(env.type), env.occurred_at, canonical)
            except Rejection:
                continue
            seen.add(canonical["event_id"])
            accepted.append(canonical)
            entry = LedgerEntry(key, session.version, env.event_id, env.district_id,
                                canonical, body_digest(canonical))  # fmt: skip
            pending.append((session, entry))
            if len(pending) >= batch:
                _flush(ledger, pending)
        _flush(ledger, pending)
        _drop_new_tables(ledger)
    finally:
        ledger.close()
    return accepted


def _flush(ledger: Any, pending: list[tuple[TutoringSession, LedgerEntry]]) -> None:
    if not pending:
        return
    events = [e for s in {id(s): s for s, _ in pending}.values() for e in s.collect_events()]
    order = {(e.originator_id, e.originator_version): i for i, (_, e) in enumerate(pending)}
    events.sort(key=lambda e: order[(e.originator_id, e.originator_version)])
    ledger.save(*events, ledger_entries=[e for _, e in pending])
    pending.clear()


def _drop_new_tables(ledger: Any) -> None:
    from tutorledger.infra.eventstore.legacy import sql_rows

    for table in NEW_TABLES:
        sql_rows(ledger, f"DROP TABLE IF EXISTS {table}", write=True)


def put_school(url: str, district_id: str, school_id: str, enrollment: dict[str, int]) -> None:
    """A school update, recorded as the old versions did (its format did not change)."""
    ledger = open_store(url)
    try:
        ledger.put_school(
            district_id, school_id, f"School {school_id}", enrollment, date(2026, 1, 5)
        )
        _drop_new_tables(ledger)
    finally:
        ledger.close()
