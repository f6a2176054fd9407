"""HTTP DTOs of the early alerts: each alert carries the figures that raised it and links to
the metric queries (or session records) that show them."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from tutorledger.api.metrics.schemas import SUPPRESSED_HELP
from tutorledger.domain.alert_rules import AlertRules

Kind = Literal[
    "subject_hotspot",
    "long_waits",
    "falling_use",
    "equity_gap",
    "tutor_overlap",
    "repeated_subject",
    "long_session",
]
Figure = int | float | str | list[str] | None


class AlertScope(BaseModel):
    school_id: str | None = None
    subject: str | None = None
    student_token: str | None = Field(default=None, description="Student kinds: the token")
    session_id: str | None = None
    provider: str | None = Field(default=None, description="tutor_overlap: the provider")
    tutor_id: str | None = Field(default=None, description="tutor_overlap: the tutor")
    group: str | None = Field(default=None, description="equity_gap: the roster group")


class AlertOut(BaseModel):
    kind: Kind
    scope: AlertScope
    window_from: date = Field(description="First local date the figures cover")
    window_to: date = Field(description="Last local date the figures cover")
    figures: dict[str, Figure] = Field(description="The figures that raised the alert")
    evidence: list[str] = Field(
        description="API paths (metric queries pinned to as_of_position, or session records) "
        "that show those figures"
    )
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class AlertList(BaseModel):
    district_id: str
    at: date | None = Field(description="Windows end on this local date (null: no event yet)")
    as_of_position: int = Field(description="Ledger position the alerts were computed at")
    head_hash: str | None
    time_zone: str
    rules: AlertRules = Field(description="The district's thresholds")
    alerts: list[AlertOut]
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)
