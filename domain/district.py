"""A district's calendar: its time zone and school hours, which local-time metrics depend on."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tutorledger.domain.alert_rules import AlertRules
from tutorledger.domain.dosage_standard import DosageStandard, EdFi

DEFAULT_SCHOOL_DAYS = (1, 2, 3, 4, 5)
Weekday = Annotated[int, Field(ge=1, le=7, description="ISO weekday: 1 = Monday … 7 = Sunday")]


def check_zone(name: str) -> str:
    """An IANA zone name, or a ValueError naming it (typos must fail at startup, not per query)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as "
                         "'America/Chicago')") from exc  # fmt: skip
    return name


def _minutes(text: str) -> int:
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"time {text!r} must be HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise ValueError(f"time {text!r} is not a time of day")
    return value


class SchoolHours(BaseModel):
    """When school is in session, local time: [start, end) on each of `days`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[Weekday, ...] = Field(default=DEFAULT_SCHOOL_DAYS, min_length=1)
    start: str = "08:00"
    end: str = "15:30"

    @property
    def start_minute(self) -> int:
        return _minutes(self.start)

    @property
    def end_minute(self) -> int:
        return _minutes(self.end)

    @model_validator(mode="after")
    def _ordered(self) -> SchoolHours:
        if self.start_minute >= self.end_minute:
            raise ValueError(f"school hours start {self.start} must be before end {self.end}")
        if len(set(self.days)) != len(self.days):
            raise ValueError(f"school days {list(self.days)} repeat a day")
        return self

    def contains(self, weekday: int, minute_of_day: int) -> bool:
        """Is a local (ISO weekday, minute of day) inside school hours?"""
        return weekday in self.days and self.start_minute <= minute_of_day < self.end_minute


class DistrictProfile(BaseModel):
    """Per-district settings; absent fields fall back to the process defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_zone: str
    school_hours: SchoolHours = SchoolHours()
    suppression_threshold: int = Field(
        default=10, ge=1, description="Dashboard counts below this are withheld"
    )
    retention_years: int | None = Field(
        default=None, ge=1, description="Shred students inactive this long (None: keep)"
    )
    dosage_target_minutes: int = Field(
        default=60, ge=1, le=7 * 24 * 60, description="Weekly tutoring minutes per student"
    )
    alerts: AlertRules = AlertRules()
    dosage_standard: DosageStandard = DosageStandard()
    edfi: EdFi = EdFi()

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


def parse_profiles(raw: Any, default_tz: str) -> dict[str, DistrictProfile]:
    """`{district_id: {"time_zone"?, "school_hours"?}}` → profiles; ValueError names the fault."""
    if not isinstance(raw, dict):
        raise ValueError("districts file must hold a JSON object keyed by district_id")
    profiles = {}
    for district_id, entry in raw.items():
        if not isinstance(entry, dict):
            raise ValueError(f"district {district_id!r}: expected an object")
        try:
            profiles[district_id] = DistrictProfile.model_validate(
                {"time_zone": default_tz, **entry}
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"district {district_id!r}: {problems}") from None
    return profiles
