"""Declarative mappings from a vendor's session export (one row per session) to lifecycle events.

A mapping is a TOML file naming which column holds which fact, how to read its values and
the time zone of timestamps written without an offset. Each row becomes, in order:
`session.requested` (always); `session.matched` when a match time is given;
`session.cancelled` when the cancel-reason column maps to a reason (at the end time), else
`session.completed` when an end time is given; `session.surveyed` when a rating or a
"helped" answer is given (at the survey time, else the end time). Event ids are UUIDv5 of
district, session and step, so the same row imported twice yields the same events.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tutorledger.domain.district import check_zone
from tutorledger.domain.errors import TutorLedgerError

IMPORT_NAMESPACE = UUID("0b6f3c1e-94d2-5a7e-8c1b-6d4f2a9e7b30")
_NAMESPACE_BYTES = IMPORT_NAMESPACE.bytes
VALUE_MAPPED = ("grade", "subject", "outcome", "cancel_reason", "helped")
_GRADES = {"k": 0, "kg": 0, **{str(g): g for g in range(13)}, **{f"{g:02d}": g for g in range(13)}}
_BOOLS = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False,
          "0": False}  # fmt: skip
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


class InvalidMapping(TutorLedgerError):
    """The mapping file cannot be used; nothing was imported."""

    code = "invalid_mapping"


M = TypeVar("M", bound=BaseModel)


class Columns(BaseModel):
    """Source column (CSV header, or NDJSON key; `a.b` reaches into nested objects) per fact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: str
    requested_at: str
    student_id: str
    school_id: str
    grade: str
    subject: str
    matched_at: str | None = None
    tutor_id: str | None = None
    ended_at: str | None = None
    outcome: str | None = None
    cancel_reason: str | None = None
    surveyed_at: str | None = None
    helped: str | None = None
    rating: str | None = None
    comment: str | None = None
    topic: str | None = None
    requested_tutor_id: str | None = None


class SessionMapping(BaseModel):
    """One vendor export format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    format: Literal["csv", "ndjson"] = "csv"
    encoding: str = "utf-8-sig"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    time_zone: str | None = Field(default=None, description="zone of naive timestamps")
    timestamp_format: str | None = Field(default=None, description="strptime; default ISO 8601")
    session_prefix: str = Field(default="", description="prepended to the vendor's session id")
    columns: Columns
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="per fact: source value → value ('' = absent)"
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @field_validator("values")
    @classmethod
    def _mappable(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        unknown = sorted(set(value) - set(VALUE_MAPPED))
        if unknown:
            raise ValueError(f"values for {unknown}: only {list(VALUE_MAPPED)} can be mapped")
        return value


def shipped_mapping(name: str) -> Path | None:
    """A mapping shipped with tutorledger (`infra/importers/mappings/<name>.toml`), if any."""
    found = resources.files("tutorledger.infra.importers").joinpath("mappings", f"{name}.toml")
    return Path(str(found)) if found.is_file() else None


def load_mapping(path: Path) -> SessionMapping:
    """Read and check a session mapping file; InvalidMapping says what is wrong."""
    return read_mapping(path, SessionMapping)


def read_mapping(path: Path, model: type[M]) -> M:
    """Read a TOML mapping file into `model` (sessions, invoices); InvalidMapping says what
    is wrong: the file, or each field's location and problem (never a value)."""
    try:
        return model.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidMapping(f"mapping {path}: {exc}") from None
    except ValidationError as exc:
        problems = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidMapping(f"mapping {path} is not valid", problems) from None


@dataclass(frozen=True)
class RowProblem:
    """Why (part of) a row yields no event. Names the column, never a student's value."""

    line: int
    session_id: str | None
    event_type: str | None
    code: str
    message: str


class _Skip(Exception):
    """One fact of a row cannot be read; `message` names the column, not the value."""


def _slug(text: str) -> str:
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


class RowConverter:
    """Turns source rows into raw envelopes for `Ledger.record_events` (which validates)."""

    def __init__(self, mapping: SessionMapping, district_id: str, default_zone: str) -> None:
        self.mapping = mapping
        self.district_id = district_id
        self.zone: tzinfo = ZoneInfo(mapping.time_zone or default_zone)
        self.maps = {k: {s.strip().casefold(): v for s, v in m.items()}
                     for k, m in mapping.values.items()}  # fmt: skip
        # Each fact's column, looked up once: `cell` runs about 18 times per source row.
        self.columns: dict[str, str | None] = mapping.columns.model_dump()

    def cell(self, row: Mapping[str, Any], fact: str) -> str:
        column = self.columns[fact]
        if not column:
            value = None
        else:
            value = row[column] if column in row else _lookup(row, column)
        if type(value) is str:  # a CSV cell: the common case, no conversion
            text = value.strip()
        else:
            text = "" if value is None else _text(value).strip()
        mapped = self.maps.get(fact)
        return mapped.get(text.casefold(), text) if mapped else text

    def time(self, row: Mapping[str, Any], fact: str) -> datetime:
        text = self.cell(row, fact)
        fmt = self.mapping.timestamp_format
        try:
            at = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
        except ValueError:
            shown = f"format {fmt!r}" if fmt else "ISO 8601"
            raise _Skip(f"{fact}: {text!r} is not a timestamp ({shown})") from None
        return at if at.tzinfo else at.replace(tzinfo=self.zone)

    def events(
        self, line: int, row: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], list[RowProblem]]:
        """The row's lifecycle events, in order, and what could not be read."""
        sid = self.cell(row, "session_id")
        session = f"{self.mapping.session_prefix}{sid}" if sid else None
        if session is None:
            return [], [RowProblem(line, None, None, "invalid_row", "session_id: empty")]
        try:
            requested_at = self.time(row, "requested_at")
            grade = self._grade(row)
        except _Skip as exc:
            return [], [RowProblem(line, session, "session.requested", "invalid_row", str(exc))]
        payload = {
            "school_id": self.cell(row, "school_id"),
            "student_id": self.cell(row, "student_id"),
            "grade": grade,
            "subject": _slug(self.cell(row, "subject")),
        }
        for optional in ("topic", "requested_tutor_id"):
            if value := self.cell(row, optional):
                payload[optional] = value
        events = [self._envelope(session, "requested", requested_at, payload)]
        problems: list[RowProblem] = []
        for step, build in (("matched", self._matched), ("ended", self._ended),
                            ("surveyed", self._surveyed)):  # fmt: skip
            try:
                event = build(row, session)
            except _Skip as exc:
                kind = "session.surveyed" if step == "surveyed" else f"session.{step}"
                problems.append(RowProblem(line, session, kind, "invalid_row", str(exc)))
                continue
            if event is not None:
                events.append(event)
        return events, problems

    def _grade(self, row: Mapping[str, Any]) -> int:
        text = self.cell(row, "grade")
        grade = _GRADES.get(text.casefold())
        if grade is None:
            raise _Skip(f"grade: {text!r} is not K or 0-12")
        return grade

    def _matched(self, row: Mapping[str, Any], session: str) -> dict[str, Any] | None:
        if not self.cell(row, "matched_at"):
            return None
        at = self.time(row, "matched_at")
        return self._envelope(session, "matched", at, {"tutor_id": self.cell(row, "tutor_id")})

    def _ended(self, row: Mapping[str, Any], session: str) -> dict[str, Any] | None:
        reason = self.cell(row, "cancel_reason")
        if not self.cell(row, "ended_at"):
            if reason:
                raise _Skip("ended_at: empty, but the session was cancelled")
            return None
        at = self.time(row, "ended_at")
        if reason:
            return self._envelope(session, "cancelled", at, {"reason": reason})
        outcome = self.cell(row, "outcome")
        return self._envelope(session, "completed", at, {"outcome": outcome} if outcome else {})

    def _surveyed(self, row: Mapping[str, Any], session: str) -> dict[str, Any] | None:
        helped, rating = self.cell(row, "helped"), self.cell(row, "rating")
        if not (helped or rating):
            return None
        if helped.casefold() not in _BOOLS:
            raise _Skip(f"helped: {helped!r} is not yes/no")
        if not re.fullmatch(r"\d+(\.0*)?", rating):
            raise _Skip(f"rating: {rating!r} is not a whole number")
        survey_time = "surveyed_at" if self.cell(row, "surveyed_at") else "ended_at"
        payload: dict[str, Any] = {
            "helped": _BOOLS[helped.casefold()],
            "rating": int(float(rating)),
        }
        if comment := self.cell(row, "comment"):
            payload["comment"] = comment
        return self._envelope(session, "surveyed", self.time(row, survey_time), payload)

    def _envelope(
        self, session: str, step: str, at: datetime, payload: dict[str, Any]
    ) -> dict[str, Any]:
        kind = f"session.{step}"
        return {
            "event_id": import_event_id(f"{self.district_id}/{session}/{kind}"),
            "type": kind,
            "schema_version": 1,
            "district_id": self.district_id,
            "session_id": session,
            "occurred_at": at.isoformat(),
            "payload": payload,
        }


def import_event_id(name: str) -> str:
    """`str(uuid5(IMPORT_NAMESPACE, name))`, written out directly: the importer makes one
    per event, and the UUID object built only to be printed cost as much as the hash."""
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _lookup(row: Mapping[str, Any], column: str) -> Any:
    """A CSV cell, or an NDJSON value (a dotted name reaches into nested objects)."""
    if column in row:
        return row[column]
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
