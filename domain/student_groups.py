"""Student groups from the roster: who counts as an English learner, on an IEP, … on a date.

A group is recorded exactly like a priority cohort (`cohort.updated`, whole membership as
tokens, never ids or names) under a reserved cohort id, `roster.<code>`, so its membership
at any ledger position is the last import at or before it and every metric can filter on
it the way it filters on a cohort. `roster.all` holds every student of the roster: the
district a group is compared against. The roster's date is part of the group's name.
Erasure follows the cohort rule: the token stays a member (figures do not change) and the
link from the student id to it is destroyed, so the attributes resolve to nobody.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from tutorledger.domain.batch import LedgerEntry
from tutorledger.domain.cohort import Cohort, cohort_envelope, cohort_key
from tutorledger.domain.envelope import body_digest
from tutorledger.domain.errors import NotFound
from tutorledger.domain.ledger import Built, Ledger
from tutorledger.domain.tokens import tokenise

GROUP_PREFIX = "roster."
ALL = "all"
# Group code → label. Codes are what `group=` and `group_by=group` name.
GROUP_LABELS: dict[str, str] = {
    "econ_disadv": "Economically disadvantaged (FRL)",
    "ell": "English learners",
    "sped": "Special education (IEP)",
    "s504": "Section 504 plan",
    "gifted": "Gifted and talented",
    "homeless": "Experiencing homelessness",
    "foster": "In foster care",
    "female": "Female",
    "male": "Male",
    "sex_other": "Sex: other",
    "american_indian": "American Indian or Alaska Native",
    "asian": "Asian",
    "black": "Black or African American",
    "pacific_islander": "Native Hawaiian or Other Pacific Islander",
    "white": "White",
    "two_or_more_races": "Two or more races",
    "hispanic": "Hispanic or Latino",
}
GROUP_CODES = tuple(GROUP_LABELS)
GROUP_HELP = ", ".join(GROUP_CODES)


GROUP_PATTERN = "^(" + "|".join(GROUP_CODES) + ")$"


class UnknownGroup(NotFound):
    """A group filter naming a group the district's roster had not recorded at the position."""

    code = "unknown_group"


def group_cohort(code: str) -> str:
    """The reserved cohort id a group is recorded under."""
    return GROUP_PREFIX + code


def is_roster_group(cohort_id: str) -> bool:
    return cohort_id.startswith(GROUP_PREFIX)


@dataclass(frozen=True)
class GroupsRecorded:
    """What an import recorded: per group, its size and the position (None: unchanged)."""

    sizes: dict[str, int]
    positions: dict[str, int | None]


def record_groups(
    ledger: Ledger,
    district_id: str,
    as_of: date,
    members: Mapping[str, Sequence[str]],
    students: Sequence[str],
) -> GroupsRecorded:
    """Record each group's whole membership (student ids → tokens) and `roster.all`, in one
    transaction; a group whose latest record already says exactly this is left alone."""
    wanted = {ALL: sorted(set(students)), **{c: sorted(set(members.get(c, ()))) for c in members}}
    changed: list[str] = []

    def build() -> Built:
        changed.clear()
        at = datetime.now(UTC)
        tokens, writes = tokenise(ledger.index, ledger.cipher, district_id, students, at)
        aggregates: list[Aggregate] = []
        entries: list[LedgerEntry] = []
        for code, ids in wanted.items():
            envelope = cohort_envelope(
                district_id, group_cohort(code), _name(code, as_of), [tokens[i] for i in ids], at
            )
            cohort = _current(ledger, district_id, code)
            if cohort is not None and _same(cohort.envelope, envelope):
                continue
            if cohort is None:
                cohort = Cohort(envelope=envelope)
            else:
                cohort.update(envelope)
            aggregates.append(cohort)
            entries.append(entry_of(cohort, envelope))
            changed.append(code)
        return aggregates, entries, writes

    recordings = ledger.save_built(build)
    positions: dict[str, int | None] = dict.fromkeys(wanted)
    for code, recording in zip(changed, recordings, strict=False):
        positions[code] = recording.notification.id
    return GroupsRecorded({c: len(ids) for c, ids in wanted.items()}, positions)


def entry_of(cohort: Cohort, envelope: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        cohort.id,
        cohort.version,
        UUID(envelope["event_id"]),
        envelope["district_id"],
        envelope,
        body_digest(envelope),
    )


def _name(code: str, as_of: date) -> str:
    label = "All rostered students" if code == ALL else GROUP_LABELS[code]
    return f"{label}, roster of {as_of.isoformat()}"


def _current(ledger: Ledger, district_id: str, code: str) -> Cohort | None:
    try:
        cohort: Cohort = ledger.repository.get(cohort_key(district_id, group_cohort(code)))
    except AggregateNotFoundError:
        return None
    return cohort


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return bool(old["payload"] == new["payload"])
