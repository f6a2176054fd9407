"""Roster-group membership as a `session_facts` condition (the `group` filter of every metric).

A group `g` is the cohort `roster.g` (domain/student_groups.py): the same membership rule as
a cohort filter, under its own parameter so a cohort and a group can be combined.
"""

from __future__ import annotations

from tutorledger.projections.cohorts import MEMBERS_SQL

PREFIX = "roster."


def group_condition(cohorts: str) -> str:
    """A `session_facts` condition: the step's student is in the filter's group as of the
    position (the group's latest import at or before it)."""
    inner = MEMBERS_SQL.format(cohorts=cohorts).replace("%(cohort_id)s", "%(group_cohort)s")
    return f"student_key IN ({inner})"
