"""`tutorledger import-grades`: students' grades into the ledger, for usage-vs-grades figures.

Exit codes: 0 done, 1 the file was refused (bad rows; nothing recorded), 2 could not run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from tutorledger.api.cli.common import StoreOpt, fail, load_settings, reject_file
from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.domain.errors import TutorLedgerError

commands = typer.Typer()


def _district(value: str) -> str:
    if not re.fullmatch(DISTRICT_PATTERN, value):
        raise typer.BadParameter("1-64 characters of [A-Za-z0-9_.-]")
    return value


@commands.command("import-grades")
def import_grades(
    path: Annotated[Path, typer.Argument(exists=True, readable=True, help="Grades CSV")],
    district: Annotated[str, typer.Option("--district", help="District id", callback=_district)],
    mapping: Annotated[
        Path,
        typer.Option(exists=True, help="TOML: [terms] grading dates, [letters], [columns]"),
    ],
    event_store: StoreOpt = None,
) -> None:
    """Record each student's grade per subject and term (tokens only; re-runs add nothing)."""
    from tutorledger.domain.grades import InvalidGrades
    from tutorledger.domain.records import record_grades
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.importers.grades import load_mapping, read_grades

    try:
        grades = read_grades(path, load_mapping(mapping))
    except InvalidGrades as exc:
        raise reject_file(exc) from None
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    ledger = open_ledger(load_settings(event_store=event_store))
    try:
        result = record_grades(ledger, district, grades)
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    finally:
        ledger.close()
    summary = {
        "rows": len(grades),
        "recorded": result.recorded,
        "unchanged": result.unchanged,
        "position": result.position,
    }
    typer.echo(json.dumps(summary))
