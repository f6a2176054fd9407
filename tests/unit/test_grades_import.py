"""The grades file rules: every bad line is named (line, column, never a value), a file with
any bad line yields nothing, and good lines map to 0–100 scores through the declared scale."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tutorledger.domain.grades import InvalidGradeMapping, InvalidGrades
from tutorledger.infra.importers.grades import GradeMapping, load_mapping, read_grades

MAPPING = GradeMapping(
    terms={"t1": date(2026, 1, 23), "t2": date(2026, 6, 5)}, letters={"A": 95, "b+": 88}
)
DEFECTS = {
    "grade": ("s-{n}", "Math", "t1", "A-"),
    "term": ("s-{n}", "Math", "t9", "70"),
    "student": ("s {n}", "Math", "t1", "70"),
}
Row = tuple[str | None, int, str, str]  # (defect or None, student number, term, grade)


def write(
    tmp: Path, rows: list[tuple[str, str, str, str]], header: str = "student,subject,term,grade"
) -> Path:
    path = tmp / "grades.csv"
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    return path


rows_strategy = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(sorted(DEFECTS))),
        st.integers(0, 10_000),
        st.sampled_from(["t1", "t2"]),
        st.one_of(
            st.sampled_from(["A", "a", "B+", "b+"]),
            st.integers(0, 100).map(str),
            st.floats(0, 100, allow_nan=False).map(lambda x: f"{x:.2f}"),
        ),  # fmt: skip
    ),
    max_size=30,
    unique_by=lambda r: (r[1], r[2]),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy)
def test_bad_lines_are_named_and_refuse_the_file(tmp_path: Path, rows: list[Row]) -> None:
    cells = []
    for defect, n, term, grade in rows:
        template = DEFECTS[defect] if defect else ("s-{n}", "Math", term, grade)
        cells.append((template[0].format(n=n), template[1], template[2], template[3]))
    path = write(tmp_path, cells)
    bad = [(i + 2, defect) for i, (defect, *_rest) in enumerate(rows) if defect]
    if bad:
        with pytest.raises(InvalidGrades) as caught:
            read_grades(path, MAPPING)
        details = caught.value.details or []
        assert [(p["line"], p["column"]) for p in details] == bad
        assert not any(
            f"s-{n}" in json.dumps(details) or f"s {n}" in json.dumps(details)
            for _, n, _, _ in rows
        )
        return
    grades = read_grades(path, MAPPING)
    letters = {"A": 95.0, "B+": 88.0}
    assert [(g.student_id, g.subject, g.term, g.score) for g in grades] == [
        (f"s-{n}", "math", term, letters.get(grade.upper(), None) or float(grade))
        for _, n, term, grade in rows
    ]
    assert all(g.term_end == MAPPING.terms[g.term] for g in grades)


def test_header_columns_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(InvalidGrades) as caught:
        read_grades(
            write(tmp_path, [("s-1", "math", "t1", "70")], "id,subject,term,grade"), MAPPING
        )
    assert caught.value.details == [
        {"file": "grades.csv", "line": 1, "problem": "missing column", "column": "student"}
    ]
    renamed = MAPPING.model_copy(
        update={"columns": MAPPING.columns.model_copy(update={"student": "id"})}
    )
    assert (
        len(
            read_grades(
                write(tmp_path, [("s-1", "math", "t1", "70")], "id,subject,term,grade"), renamed
            )
        )
        == 1
    )
    twice = [("s-1", "Algebra I", "t1", "70"), ("s-1", "algebra-i", "t1", "71")]
    with pytest.raises(InvalidGrades) as caught:
        read_grades(write(tmp_path, twice), MAPPING)
    assert [(p["line"], "first: line 2" in p["problem"]) for p in caught.value.details or []] == [
        (3, True)
    ]


def test_a_mapping_without_terms_or_with_a_bad_scale_is_refused(tmp_path: Path) -> None:
    for text in (
        "[letters]\nA = 95\n",
        '[terms]\nt1 = "2026-01-23"\n[letters]\nA = 120\n',
        "terms = [",
    ):
        (tmp_path / "m.toml").write_text(text)
        with pytest.raises(InvalidGradeMapping):
            load_mapping(tmp_path / "m.toml")
