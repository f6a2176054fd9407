"""Session step codes: the `step` column of `session_facts`, one code per EventType.

These are stored values (migration 0003 documents them; every projected row and every
generation holds them), so a code never changes. They are not the lifecycle order
(`domain.session.LIFECYCLE_RANK`): cancelled was given the code after completed. SQL
names a step through these constants (`step = {COMPLETED}`), never a literal integer.
"""

from __future__ import annotations

from collections.abc import Mapping

from tutorledger.domain.envelope import EventType, per_kind

REQUESTED = 0
MATCHED = 1
COMPLETED = 2
CANCELLED = 3
SURVEYED = 4

# Keyed by EventType (a StrEnum, so a row's plain `type` string looks it up too); missing
# a kind fails at import: otherwise that kind's events would vanish from the read models.
STEP_CODES: Mapping[EventType, int] = per_kind(
    {
        EventType.REQUESTED: REQUESTED,
        EventType.MATCHED: MATCHED,
        EventType.COMPLETED: COMPLETED,
        EventType.CANCELLED: CANCELLED,
        EventType.SURVEYED: SURVEYED,
    },
    "projections.steps.STEP_CODES",
)
SESSION_TYPES: tuple[str, ...] = tuple(kind.value for kind in STEP_CODES)


def step_in(steps: tuple[int, ...]) -> str:
    """`step IN (…)` for these codes (integers from this module, never caller text)."""
    if not steps or any(s not in STEP_CODES.values() for s in steps):
        raise ValueError(f"not step codes: {steps!r}")
    return f"step IN ({', '.join(str(int(s)) for s in steps)})"
