"""Request and response bodies of the cohort and outcome routes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tutorledger.domain.cohort import MAX_MEMBERS
from tutorledger.domain.envelope import TEXT_PATTERN, PersonId


class CohortUpdate(BaseModel):
    """A cohort's name and whole membership (the district's student ids, tokenised at once)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
    student_ids: list[PersonId] = Field(max_length=MAX_MEMBERS)


class CohortRecorded(BaseModel):
    district_id: str
    cohort_id: str
    position: int = Field(description="Ledger position of this update")
    size: int = Field(description="Distinct students in the cohort")


class CohortOut(BaseModel):
    cohort_id: str
    name: str
    size: int | None = Field(description="Members; null for a dashboard key when small")
    as_of_position: int = Field(description="Ledger position of the update defining it")


class CohortList(BaseModel):
    district_id: str
    as_of_position: int
    cohorts: list[CohortOut]


class OutcomeBand(BaseModel):
    band: str = Field(description="none, 1-2, 3-9 or 10+ sessions in the subject between terms")
    students: int | None = Field(description="Students with a grade in both terms")
    mean_from: float | None = Field(description="Mean grade (0-100) in term_from")
    mean_to: float | None = Field(description="Mean grade (0-100) in term_to")
    mean_change: float | None = Field(description="Mean of (grade in term_to - in term_from)")
    suppressed: bool = False


class Outcomes(BaseModel):
    district_id: str
    as_of_position: int
    head_hash: str | None
    filters: dict[str, Any]
    subject: str
    term_from: str
    term_to: str
    window_start: str | None = Field(description="First local date counted (day after term_from)")
    window_end: str | None = Field(description="Last local date counted (term_to's grading date)")
    interpretation: str
    rows: list[OutcomeBand]
    suppressed: bool = False
