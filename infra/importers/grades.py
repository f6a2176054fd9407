"""Grades from a district's CSV export, checked whole before anything is recorded.

The mapping (TOML) declares what the file cannot say by itself:

    [columns]            # optional: the header names of the four facts
    student = "student"
    subject = "subject"
    term = "term"
    grade = "grade"

    [terms]              # required: each term's grading date (its grades' date, local)
    2025-fall = "2025-12-19"
    2026-spring = "2026-05-29"

    [letters]            # optional: letter grade → 0–100 (case-insensitive)
    A = 95
    B = 85

A grade is a number 0–100, or a letter declared under [letters]. Student ids are read in
memory only, never logged or echoed: a problem names its line and column, never a value.
"""

from __future__ import annotations

import csv
import re
import tomllib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tutorledger.domain.envelope import DISTRICT_PATTERN, SESSION_PATTERN
from tutorledger.domain.grades import Grade, InvalidGradeMapping, InvalidGrades

MAX_PROBLEMS = 1000
FACTS = ("student", "subject", "term", "grade")
Score = Annotated[float, Field(ge=0, le=100)]


class Columns(BaseModel):
    model_config = ConfigDict(extra="forbid")
    student: str = "student"
    subject: str = "subject"
    term: str = "term"
    grade: str = "grade"


class GradeMapping(BaseModel):
    """The declared meaning of a grades file."""

    model_config = ConfigDict(extra="forbid")
    columns: Columns = Columns()
    terms: dict[Annotated[str, Field(pattern=DISTRICT_PATTERN)], date] = Field(min_length=1)
    letters: dict[str, Score] = {}

    def score(self, text: str) -> float | None:
        """The 0–100 score of a cell, or None when it is neither a number nor a letter."""
        letters = {k.strip().upper(): v for k, v in self.letters.items()}
        if text.upper() in letters:
            return letters[text.upper()]
        try:
            value = float(text)
        except ValueError:
            return None
        return value if 0 <= value <= 100 else None


def load_mapping(path: Path) -> GradeMapping:
    try:
        return GradeMapping.model_validate(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise InvalidGradeMapping(f"grades mapping {path.name}: {exc}") from None


def _problem(path: Path, line: int, column: str | None, problem: str) -> dict[str, Any]:
    found: dict[str, Any] = {"file": path.name, "line": line, "problem": problem}
    if column is not None:
        found["column"] = column
    return found


def _rows(path: Path, mapping: GradeMapping) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        wanted = mapping.columns.model_dump()
        missing = [wanted[k] for k in FACTS if wanted[k] not in header]
        if missing:
            raise InvalidGrades(
                "the header lacks required columns",
                [_problem(path, 1, c, "missing column") for c in missing],
            )
        for row in reader:
            yield reader.line_num, {k: (row.get(wanted[k]) or "").strip() for k in FACTS}


def _check(
    path: Path, line: int, cells: dict[str, str], mapping: GradeMapping
) -> Grade | list[dict[str, Any]]:
    names = mapping.columns.model_dump()
    problems = []
    if not re.fullmatch(SESSION_PATTERN, cells["student"]):
        problems.append(_problem(path, line, names["student"], "not a student id"))
    subject = re.sub(r"[^a-z0-9]+", "-", cells["subject"].lower()).strip("-")
    if not re.fullmatch(r"[a-z0-9-]{1,64}", subject):
        problems.append(_problem(path, line, names["subject"], "no subject"))
    if cells["term"] not in mapping.terms:
        problems.append(_problem(path, line, names["term"], "term not declared in the mapping"))
    score = mapping.score(cells["grade"])
    if score is None:
        problem = "not a number 0-100 nor a declared letter grade"
        problems.append(_problem(path, line, names["grade"], problem))
    if problems or score is None:
        return problems
    term_end = mapping.terms[cells["term"]]
    return Grade(cells["student"], subject, cells["term"], term_end, score)


def read_grades(path: Path, mapping: GradeMapping) -> list[Grade]:
    """Every grade of the file, or InvalidGrades listing each bad line (up to 1,000)."""
    grades: list[Grade] = []
    problems: list[dict[str, Any]] = []
    first_line: dict[tuple[str, str, str], int] = {}
    for line, cells in _rows(path, mapping):
        found = _check(path, line, cells, mapping)
        if isinstance(found, list):
            problems.extend(found)
            continue
        key = (found.student_id, found.subject, found.term)
        if key in first_line:
            note = f"second grade for one student, subject and term (first: line {first_line[key]})"
            problems.append(_problem(path, line, None, note))
            continue
        first_line[key] = line
        grades.append(found)
    if problems:
        raise InvalidGrades(
            f"{len(problems)} bad row(s); nothing recorded", problems[:MAX_PROBLEMS]
        )
    return grades
