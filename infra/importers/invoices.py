"""Reading a provider's invoice (billed sessions, CSV or NDJSON) through a TOML mapping.

The mapping is shaped like the session importers' (session_mapping.py): the file's format,
encoding, delimiter, the time zone of times written without an offset, a `session_prefix`
and, under `[columns]`, which column holds each fact. A row names its session by
`session_id`, or by `billed_at` and `student_id`; `minutes` and `amount` are required.
Without a mapping file the columns are named like the facts (`session_id`, `billed_at`,
`student_id`, `minutes`, `amount`) and the format follows the file's extension.

The whole file is read and checked before anything is reconciled: any malformed row makes
`InvalidInvoice`, whose details name each row by line and column (never its values: a
column may hold a student id).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tutorledger.domain.district import check_zone
from tutorledger.domain.errors import TutorLedgerError
from tutorledger.infra.importers.session_mapping import read_mapping
from tutorledger.infra.importers.session_reader import read_records

MAX_LISTED = 100  # malformed rows named in the error; the count says how many in all


class InvalidInvoice(TutorLedgerError):
    """The invoice has malformed rows; nothing was reconciled or recorded."""

    code = "invalid_invoice"


class InvoiceColumns(BaseModel):
    """Source column (CSV header or NDJSON key; `a.b` reaches into nested objects)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: str | None = "session_id"
    billed_at: str | None = "billed_at"
    student_id: str | None = "student_id"
    minutes: str = "minutes"
    amount: str = "amount"

    @model_validator(mode="after")
    def _names_a_session(self) -> InvoiceColumns:
        if self.session_id is None and (self.billed_at is None or self.student_id is None):
            raise ValueError("name session_id, or both billed_at and student_id")
        return self


class InvoiceMapping(BaseModel):
    """One provider's invoice format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    format: Literal["csv", "ndjson"] = "csv"
    encoding: str = "utf-8-sig"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    time_zone: str | None = Field(default=None, description="zone of naive timestamps")
    timestamp_format: str | None = Field(default=None, description="strptime; default ISO 8601")
    session_prefix: str = Field(default="", description="prepended to the provider's session id")
    columns: InvoiceColumns = InvoiceColumns()

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)


def load_invoice_mapping(path: Path | None, source: Path) -> InvoiceMapping:
    """The mapping file, or the default one (format by `source`'s extension)."""
    if path is None:
        ndjson = source.suffix.lower() in (".ndjson", ".jsonl")
        return InvoiceMapping(format="ndjson" if ndjson else "csv")
    return read_mapping(path, InvoiceMapping)


@dataclass(frozen=True)
class InvoiceRow:
    """One billed session as the file gives it (the student id stays with the caller)."""

    line: int
    session_id: str | None
    billed_at: datetime | None
    student_id: str | None
    minutes: Decimal
    amount: Decimal


class _Bad(Exception):
    def __init__(self, column: str, problem: str) -> None:
        super().__init__(problem)
        self.column, self.problem = column, problem


def _cell(row: Mapping[str, Any], column: str | None) -> str | None:
    if column is None:
        return None
    value: Any = row.get(column)
    if value is None and "." in column:  # NDJSON: reach into nested objects
        value = row
        for part in column.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _number(row: Mapping[str, Any], column: str, what: str) -> Decimal:
    text = _cell(row, column)
    if text is None:
        raise _Bad(column, f"no {what}")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Bad(column, f"{what} is not a number") from None
    if not value.is_finite() or (what == "minutes" and value < 0):
        floor = " ≥ 0" if what == "minutes" else ""
        raise _Bad(column, f"{what} must be a finite number{floor}")
    return value


class _RowReader:
    def __init__(self, mapping: InvoiceMapping, default_zone: str) -> None:
        self.mapping, self.columns = mapping, mapping.columns
        self.zone = ZoneInfo(mapping.time_zone or default_zone)

    def _time(self, text: str, column: str) -> datetime:
        try:
            fmt = self.mapping.timestamp_format
            at = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
        except ValueError:
            raise _Bad(column, "not a time in the mapping's format") from None
        return at if at.tzinfo is not None else at.replace(tzinfo=self.zone)

    def row(self, line: int, row: Mapping[str, Any]) -> InvoiceRow:
        c = self.columns
        session = _cell(row, c.session_id)
        billed_text, student = _cell(row, c.billed_at), _cell(row, c.student_id)
        if session is None and (billed_text is None or student is None):
            named = c.session_id or f"{c.billed_at} and {c.student_id}"
            raise _Bad(named, "neither a session id nor a time and a student")
        billed_at = None
        if billed_text is not None and c.billed_at is not None:
            billed_at = self._time(billed_text, c.billed_at)
        sid = None if session is None else self.mapping.session_prefix + session
        minutes = _number(row, c.minutes, "minutes")
        return InvoiceRow(line, sid, billed_at, student, minutes, _number(row, c.amount, "amount"))


def read_invoice(path: Path, mapping: InvoiceMapping, default_zone: str) -> list[InvoiceRow]:
    """Every billed row, or InvalidInvoice naming the malformed ones by line."""
    reader = _RowReader(mapping, default_zone)
    rows: list[InvoiceRow] = []
    problems: list[dict[str, Any]] = []
    bad = 0
    for line, row, _, _ in read_records(path, mapping):
        try:
            if isinstance(row, str):
                raise _Bad("", row)
            rows.append(reader.row(line, row))
        except _Bad as exc:
            bad += 1
            if len(problems) < MAX_LISTED:
                problem = {"file": path.name, "line": line, "problem": exc.problem}
                problems.append({**problem, "column": exc.column} if exc.column else problem)
    if bad:
        raise InvalidInvoice(f"{bad} malformed row{'s' if bad > 1 else ''} in {path.name}; "
                             "nothing was reconciled", problems)  # fmt: skip
    return rows
