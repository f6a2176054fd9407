"""Student groups from a roster: programme flags and demographics, recorded by token.

Sources, in one bundle (zip or directory, read like the roster import: streamed, within
the same budgets, every bad row reported with its file and line, nothing recorded then):

- OneRoster 1.1/1.2 `users.csv` (students: role `student`) with programme flags as
  `metadata.*` extension columns, and `demographics.csv` (sex, race and ethnicity flags);
- or a Clever-style `students.csv` (`Student_id`, `Gender`, `Race`, `Hispanic_Latino`,
  `Ell_status`, `Frl_status`, `IEP_status`, `Section_504_status`, `Gifted_status`, …).

Only group memberships leave this module, as student ids the ledger turns into tokens at
the door (domain/student_groups.py); names, birth dates and places of birth are never
read into anything. A group is recorded only when the bundle has a column for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from tutorledger.domain.ledger import Ledger
from tutorledger.domain.student_groups import record_groups
from tutorledger.infra.importers.oneroster import (
    Bundle,
    Limits,
    Row,
    _Checker,
    _deleted,
    read_bundle,
)

StudentKey = Literal["sourcedId", "identifier"]
TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0", ""}
# Programme flags: group code → `metadata.<name>` names a district may use (case ignored).
METADATA: dict[str, tuple[str, ...]] = {
    "econ_disadv": ("economicallydisadvantaged", "frl", "frlstatus", "freereducedlunch"),
    "ell": ("ell", "englishlearner", "ellstatus", "lep"),
    "sped": ("iep", "specialeducation", "sped", "iepstatus"),
    "s504": ("504", "section504", "plan504"),
    "gifted": ("gifted", "giftedtalented"),
    "homeless": ("homeless", "mckinneyvento"),
    "foster": ("foster", "fostercare"),
}
# demographics.csv flag columns → group code
RACE_FLAGS = {
    "americanIndianOrAlaskaNative": "american_indian",
    "asian": "asian",
    "blackOrAfricanAmerican": "black",
    "nativeHawaiianOrOtherPacificIslander": "pacific_islander",
    "white": "white",
    "demographicRaceTwoOrMoreRaces": "two_or_more_races",
    "hispanicOrLatinoEthnicity": "hispanic",
}
SEX = {"female": "female", "f": "female", "male": "male", "m": "male", "other": "sex_other",
       "x": "sex_other", "unspecified": None, "": None}  # fmt: skip
# Clever `students.csv`: programme columns (lower case) → group code; FRL takes its values.
CLEVER_FLAGS = {
    "ell_status": "ell",
    "iep_status": "sped",
    "section_504_status": "s504",
    "gifted_status": "gifted",
    "homeless_status": "homeless",
    "foster_status": "foster",
}
CLEVER_FRL = {"free": True, "reduced": True, "paid": False, "": False, "n": False, "y": True}
CLEVER_RACE = {
    "american indian": "american_indian",
    "american indian or alaska native": "american_indian",
    "asian": "asian",
    "black or african american": "black",
    "hawaiian or other pacific islander": "pacific_islander",
    "native hawaiian or other pacific islander": "pacific_islander",
    "caucasian": "white",
    "white": "white",
    "two or more races": "two_or_more_races",
    "multiracial": "two_or_more_races",
    "unknown": None,
    "": None,
}


@dataclass
class Attributes:
    """Every student of the roster (ids) and the members of each group it has a column for."""

    students: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)


def _flag(value: str) -> bool | None:
    text = value.strip().lower()
    return True if text in TRUE else False if text in FALSE else None


class _Reader:
    """One parse: bad rows go to the checker with their file, line and column."""

    def __init__(self, check: _Checker, attrs: Attributes) -> None:
        self.check, self.attrs = check, attrs

    def member(self, code: str, student: str) -> None:
        self.attrs.members.setdefault(code, []).append(student)

    def columns(self, codes: Mapping[str, str]) -> None:
        """Groups this bundle speaks for (recorded even when empty)."""
        for code in codes.values():
            self.attrs.members.setdefault(code, [])

    def flags(self, file: str, line: int, row: Mapping[str, str], cols: Mapping[str, str],
              student: str) -> None:  # fmt: skip
        for column, code in cols.items():
            value = _flag(row[column])
            if value is None:
                self.check.add(file, line, "flag must be true or false", column)
            elif value:
                self.member(code, student)


def _metadata_columns(header: list[str]) -> dict[str, str]:
    """users.csv `metadata.*` columns that name a programme flag → group code."""
    found: dict[str, str] = {}
    for column in header:
        if column.lower().startswith("metadata."):
            name = column[len("metadata.") :].lower().replace("_", "").replace(" ", "")
            for code, names in METADATA.items():
                if name in names:
                    found[column] = code
    return found


def _users(reader: _Reader, rows: Iterator[Row], key: StudentKey) -> dict[str, str]:
    """Students of users.csv with their programme flags; sourcedId → student id."""
    ids: dict[str, str] = {}
    seen: set[str] = set()
    flags: dict[str, str] | None = None
    for line, row in rows:
        if flags is None:
            flags = _metadata_columns(list(row))
            reader.columns(flags)
        if _deleted(row) or row["role"].lower() != "student":
            continue
        sourced, student = row["sourcedId"], row.get(key, "")
        if not sourced or not student or student in seen or sourced in ids:
            reader.check.add("users.csv", line, f"student {key} empty or repeated", key)
            continue
        seen.add(student)
        ids[sourced] = student
        reader.attrs.students.append(student)
        reader.flags("users.csv", line, row, flags, student)
    return ids


def _demographics(reader: _Reader, rows: Iterator[Row], ids: dict[str, str]) -> None:
    seen: set[str] = set()
    flags: dict[str, str] | None = None
    for line, row in rows:
        if flags is None:
            flags = {c: code for c, code in RACE_FLAGS.items() if c in row}
            reader.columns(flags)
            if "sex" in row:
                reader.columns({"f": "female", "m": "male", "o": "sex_other"})
        sourced = row["sourcedId"]
        if _deleted(row):
            continue
        if sourced in seen:
            reader.check.add("demographics.csv", line, "sourcedId repeated", "sourcedId")
            continue
        seen.add(sourced)
        student = ids.get(sourced)
        if student is None:
            continue  # not a student of users.csv (teachers have demographics too)
        sex = row.get("sex", "").strip().lower()
        if sex not in SEX:
            reader.check.add("demographics.csv", line, "sex must be female, male, other, "
                             "unspecified or empty", "sex")  # fmt: skip
        elif (code := SEX[sex]) is not None:
            reader.member(code, student)
        reader.flags("demographics.csv", line, row, flags, student)


def _clever(reader: _Reader, rows: Iterator[Row]) -> None:
    """A Clever-style students.csv: one row per student, flags and demographics inline."""
    seen: set[str] = set()
    columns: dict[str, str] | None = None
    for line, row in rows:
        if columns is None:
            columns = {c.lower(): c for c in row}
            reader.columns({c: code for c, code in CLEVER_FLAGS.items() if c in columns})
            if "frl_status" in columns:
                reader.columns({"frl": "econ_disadv"})
            if "gender" in columns:
                reader.columns({"f": "female", "m": "male", "o": "sex_other"})
            if "race" in columns:
                reader.columns({c: c for c in set(CLEVER_RACE.values()) if c})
            if "hispanic_latino" in columns:
                reader.columns({"h": "hispanic"})
        student = row["Student_id"]
        if not student or student in seen:
            reader.check.add("students.csv", line, "Student_id empty or repeated", "Student_id")
            continue
        seen.add(student)
        reader.attrs.students.append(student)
        _clever_row(reader, line, {k: row[c] for k, c in columns.items()}, student)


def _clever_row(reader: _Reader, line: int, row: dict[str, str], student: str) -> None:
    flags = {row_name: code for row_name, code in CLEVER_FLAGS.items() if row_name in row}
    reader.flags("students.csv", line, row, flags, student)
    checks: list[tuple[str, Mapping[str, Any], str]] = [
        ("frl_status", CLEVER_FRL, "econ_disadv"),
        ("gender", SEX, ""),
        ("race", CLEVER_RACE, ""),
    ]
    for column, values, code in checks:
        if column not in row:
            continue
        value = values.get(row[column].strip().lower(), "?")
        if value == "?":
            reader.check.add("students.csv", line, f"unknown {column} value", column)
        elif value is True or (isinstance(value, str) and value):
            reader.member(code or str(value), student)
    if "hispanic_latino" in row:
        reader.flags("students.csv", line, row, {"hispanic_latino": "hispanic"}, student)


def parse_attributes(
    bundle: Bundle | Mapping[str, bytes], key: StudentKey = "sourcedId", limits: Limits = Limits()
) -> Attributes:
    """Every student and their groups; InvalidRoster lists the bad rows (file, line, column)."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.of(bundle)
    check = _Checker(limits)
    reader = _Reader(check, Attributes())
    if bundle.open("users.csv") is not None:
        users = check.table(bundle, "users.csv", required=("sourcedId", "role", key))
        ids = _users(reader, users, key)
        _demographics(reader, check.table(bundle, "demographics.csv", optional=True), ids)
    else:
        _clever(reader, check.table(bundle, "students.csv"))
    if check.problems:
        raise check.rejection()
    return reader.attrs


@dataclass(frozen=True)
class GroupsImport:
    """What an import did: counts per group and the ledger position of each change."""

    district_id: str
    as_of: date
    students: int
    groups: dict[str, int]
    positions: dict[str, int | None]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "as_of": self.as_of.isoformat()}


def import_groups(
    ledger: Ledger,
    source: Path | bytes,
    district_id: str,
    as_of: date,
    key: StudentKey = "sourcedId",
    limits: Limits = Limits(),
) -> GroupsImport:
    """Validate the whole bundle, then record every group as of `as_of` (unchanged ones not
    again), all in one transaction."""
    with read_bundle(source, limits) as bundle:
        attrs = parse_attributes(bundle, key, limits)
    done = record_groups(ledger, district_id, as_of, attrs.members, attrs.students)
    groups = {c: n for c, n in done.sizes.items() if c != "all"}
    return GroupsImport(district_id, as_of, len(attrs.students), groups, done.positions)
