"""Early-alert thresholds: when a figure is unusual enough to put in front of district staff.

Each district may override any of them under `"alerts"` in the districts file; the defaults
are the ones docs/metrics.md documents.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AlertRules(BaseModel):
    """Thresholds and windows (days end at the alert list's `at` date, inclusive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hotspot_lift: float = Field(default=2.0, gt=0, description="subject_hotspot: lift ≥ this")
    hotspot_requests: int = Field(default=20, ge=1, description="… and at least this many")
    hotspot_days: int = Field(default=28, ge=1, le=366)
    long_wait_ratio: float = Field(default=2.0, gt=0, description="school p90 > ratio × district")
    long_wait_days: int = Field(default=7, ge=1, le=366)
    falling_use_drop: float = Field(default=0.3, gt=0, le=1, description="drop ≥ this share")
    falling_use_weeks: int = Field(default=3, ge=1, le=52, description="weeks between the two")
    falling_use_students: int = Field(
        default=10, ge=1, description="the earlier week needs at least this many active"
    )
    repeated_subject_requests: int = Field(default=5, ge=2)
    repeated_subject_days: int = Field(default=14, ge=1, le=366)
    long_session_percentile: int = Field(default=99, ge=50, le=99)
    long_session_baseline_days: int = Field(default=28, ge=1, le=366)
    long_session_days: int = Field(default=7, ge=1, le=366)
    equity_gap_margin: float = Field(
        default=0.05, gt=0, le=1, description="equity_gap: a group's rate below the rest's by more"
    )
    equity_gap_students: int = Field(
        default=20, ge=1, description="… with at least this many students in the group and the rest"
    )
    equity_gap_days: int = Field(default=28, ge=1, le=366)
    tutor_overlap_sessions: int = Field(
        default=3, ge=1, description="tutor_overlap: at least this many overlapping sessions"
    )
    tutor_overlap_share: float = Field(default=0.1, gt=0, le=1, description="… and this share")
    tutor_overlap_days: int = Field(default=28, ge=1, le=366)
