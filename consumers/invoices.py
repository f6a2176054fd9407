"""`reconcile-invoice`: a provider's invoice against the district's sessions in the ledger.

The recorded side is read from the event store itself (the district's chained events, in
position order, up to the head at the start), not from the projections: an invoice check
is an audit, so it reads the system of record and names the position it read up to. Billed
rows that name a student are looked up in the student key table (the id → token link), so
the student id is never compared, stored or reported. Nothing is written except one audit
log record holding the digests of the invoice file and of the report.

Providers: a session's provider is the one its request's stored record names, read by
`provider_of` (the seam; by default `provenance.provider`, the member the provenance work
adds to each stored event). A session whose request names no provider (every session,
until the ledger records provenance) is kept whatever `--provider` says; a session of
another provider drops out of the comparison.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.persistence import ApplicationRecorder, Mapper

from tutorledger.domain.envelope import EventType
from tutorledger.domain.invoice import (
    BilledLine,
    Period,
    RecordedSession,
    reconcile,
    report,
)
from tutorledger.domain.privacy import StudentKey, token_of
from tutorledger.infra.eventstore.audit import chain_scan, envelope_of, iter_rows
from tutorledger.infra.eventstore.audit_log import AuditLog
from tutorledger.infra.importers.invoices import InvoiceMapping, InvoiceRow, read_invoice

ACTION = "reconcile_invoice"
ProviderOf = Callable[[Mapping[str, Any]], str | None]


def recorded_provider(envelope: Mapping[str, Any]) -> str | None:
    """The provider a stored event's `provenance` names; None when it names none (events
    recorded before provenance, or posted with a key that has no provider)."""
    provenance = envelope.get("provenance")
    provider = provenance.get("provider") if isinstance(provenance, Mapping) else None
    return provider if isinstance(provider, str) else None


class StudentIndex(Protocol):
    """The student key table's lookup (district, student id) → token."""

    def find_student(self, district_id: str, student_id: str) -> StudentKey | None: ...


class Store(Protocol):
    """What the reconciliation reads: the ledger's recorder, mapper and student index."""

    @property
    def recorder(self) -> ApplicationRecorder: ...
    @property
    def mapper(self) -> Mapper[UUID]: ...
    @property
    def index(self) -> StudentIndex: ...


@dataclass(frozen=True)
class InvoiceCheck:
    """What to reconcile: the invoice, how to read it, against which district and provider."""

    source: Path
    mapping: InvoiceMapping
    district_id: str
    provider: str
    zone: str
    tolerance_minutes: Decimal
    window_minutes: int
    period: Period | None = None


def recorded_sessions(
    recorder: ApplicationRecorder,
    mapper: Mapper[UUID],
    district_id: str,
    provider: str,
    provider_of: ProviderOf = recorded_provider,
) -> tuple[list[RecordedSession], int]:
    """The district's sessions folded from its events, and the position read up to."""
    scan = chain_scan(recorder)
    upto = scan.head()
    sessions: dict[str, RecordedSession] = {}
    for envelope in _envelopes(scan, mapper, district_id, upto):
        kind = envelope.get("type")
        if kind not in _STEPS:
            continue
        s = sessions.setdefault(envelope["session_id"], RecordedSession(envelope["session_id"]))
        if kind == EventType.REQUESTED.value:  # the session is its request's provider's
            s.provider = provider_of(envelope)
        _STEPS[kind](s, envelope)
    kept = [s for s in sessions.values() if s.provider in (None, provider)]
    return kept, upto


def _envelopes(scan: Any, mapper: Mapper[UUID], district_id: str, upto: int) -> Iterator[Any]:
    for row in iter_rows(scan, district_id, upto):
        if row.stored is not None:
            yield envelope_of(mapper, row.stored)


def _at(envelope: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(envelope["occurred_at"]).replace("Z", "+00:00"))


def _requested(s: RecordedSession, e: Mapping[str, Any]) -> None:
    s.requested_at, s.student_token = _at(e), token_of(e)


def _matched(s: RecordedSession, e: Mapping[str, Any]) -> None:
    s.matched_at = _at(e)


def _completed(s: RecordedSession, e: Mapping[str, Any]) -> None:
    s.completed_at = _at(e)


def _cancelled(s: RecordedSession, e: Mapping[str, Any]) -> None:
    s.cancelled_at = _at(e)


_STEPS: dict[str, Callable[[RecordedSession, Mapping[str, Any]], None]] = {
    EventType.REQUESTED.value: _requested,
    EventType.MATCHED.value: _matched,
    EventType.COMPLETED.value: _completed,
    EventType.CANCELLED.value: _cancelled,
}


def billed_lines(rows: list[InvoiceRow], district_id: str, index: StudentIndex) -> list[BilledLine]:
    """Invoice rows with each student id replaced by its token (None: not in the ledger)."""
    tokens: dict[str, str | None] = {}
    lines = []
    for r in rows:
        token = None
        if r.student_id is not None and r.session_id is None:
            if r.student_id not in tokens:
                key = index.find_student(district_id, r.student_id)
                tokens[r.student_id] = None if key is None else key.token
            token = tokens[r.student_id]
        lines.append(BilledLine(r.line, r.session_id, r.billed_at, token, r.minutes, r.amount))
    return lines


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reconcile_invoice(
    store: Store, check: InvoiceCheck, provider_of: ProviderOf = recorded_provider
) -> dict[str, Any]:
    """Read, match, report; record the report's digest in the audit log and return it.
    A malformed invoice raises InvalidInvoice before anything is read or recorded."""
    rows = read_invoice(check.source, check.mapping, check.zone)
    lines = billed_lines(rows, check.district_id, store.index)
    sessions, upto = recorded_sessions(
        store.recorder, store.mapper, check.district_id, check.provider, provider_of
    )
    zone = ZoneInfo(check.zone)

    def local_day(at: datetime) -> date:
        return at.astimezone(zone).date()

    result = reconcile(lines, sessions, tolerance=check.tolerance_minutes,
                       window=timedelta(minutes=check.window_minutes), period=check.period,
                       local_day=local_day)  # fmt: skip
    span = result.period
    header = {
        "district_id": check.district_id,
        "provider": check.provider,
        "source": check.source.name,
        "source_sha256": file_sha256(check.source),
        "as_of_position": upto,
        "tolerance_minutes": str(check.tolerance_minutes),
        "window_minutes": check.window_minutes,
        "period": None if span is None else {"from": str(span.first), "to": str(span.last)},
    }
    body = report(result, header)
    record = {k: header[k] for k in ("provider", "source", "source_sha256", "as_of_position")}
    AuditLog(store.recorder).append(
        ACTION, check.district_id, {**record, "report_sha256": body["report_sha256"]}
    )
    return body
