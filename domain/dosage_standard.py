"""The high-dosage standard a district holds its tutoring to, and the rule that judges a student.

Research on high-impact tutoring (the National Student Support Accelerator; ERS) commonly
asks for at least three sessions a week of 30 minutes or more, for at least ten weeks. A
district states its own numbers in the districts file; these are the defaults.

Weeks are the district's local ISO weeks (Monday-Sunday). A week *counts* when it has at
least one school day: a weekday of the district's school hours that no `breaks` entry
covers. A counted week is *met* when the student has `sessions_per_week` completed sessions
of at least `session_minutes` each in it. A student has *met* the standard with `weeks` met
weeks; is *on track* when short of that but every counted week from their first week with a
completed session to the last week judged was met; else falls *short*. Weeks with no school
day are neither met nor missed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

US_PER_MINUTE = 60_000_000


class Break(BaseModel):
    """Local dates with no school (holidays, recesses), both ends included."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Break:
        if self.start > self.end:
            raise ValueError(f"break start {self.start} is after its end {self.end}")
        return self

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


class DosageStandard(BaseModel):
    """A district's high-dosage standard (districts file key `dosage_standard`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sessions_per_week: int = Field(default=3, ge=1, le=50, description="Sessions a week")
    session_minutes: int = Field(
        default=30, ge=1, le=24 * 60, description="Minimum length of a session that counts"
    )
    weeks: int = Field(default=10, ge=1, le=60, description="Met weeks needed")
    breaks: tuple[Break, ...] = Field(default=(), description="Local dates with no school")

    @property
    def session_us(self) -> int:
        return self.session_minutes * US_PER_MINUTE

    def school_days(self, monday: date, days: Iterable[int]) -> int:
        """The school days of the week starting `monday`: school weekdays outside every break."""
        weekdays = set(days)
        return sum(
            1
            for offset in range(7)
            if (day := monday + timedelta(days=offset)).isoweekday() in weekdays
            and not any(b.covers(day) for b in self.breaks)
        )


class Status(StrEnum):
    MET = "met"
    ON_TRACK = "on_track"
    SHORT = "short"


def judge(met_weeks: int, counted_since_start: int, standard: DosageStandard) -> Status:
    """A student's status from their met weeks and the counted weeks from their first week
    with a completed session to the last week judged (met weeks are among those)."""
    if met_weeks >= standard.weeks:
        return Status.MET
    if met_weeks >= counted_since_start:
        return Status.ON_TRACK
    return Status.SHORT


def mondays(first: date, last: date) -> list[date]:
    """The Mondays of every week from `first`'s to `last`'s."""
    week = first - timedelta(days=first.weekday())
    out = []
    while week <= last:
        out.append(week)
        week += timedelta(days=7)
    return out


class EdFi(BaseModel):
    """How the district appears in its Ed-Fi warehouse (districts file key `edfi`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    education_organization_id: int | None = Field(
        default=None, ge=1, description="The district's Ed-Fi educationOrganizationId (LEA)"
    )
    intervention_code: str = Field(
        default="tutoring",
        pattern=r"^[A-Za-z0-9_.-]{1,60}$",
        description="interventionIdentificationCode of the tutoring programme",
    )
    descriptor_namespace: str = Field(
        default="uri://ed-fi.org",
        pattern=r"^uri://[A-Za-z0-9_.\-/]{1,200}$",
        description="Namespace of the descriptor URIs",
    )
