"""Onboarding commands: import a district's roster and its vendor session history.

Thin like the routes: each opens the ledger from settings and calls the importer behind it.
Exit codes: 0 done, 1 the input was refused (bad rows; nothing recorded), 2 could not run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tutorledger.api.cli.common import StoreOpt, console, fail, load_settings, reject_file
from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.domain.errors import TutorLedgerError
from tutorledger.infra.importers.oneroster import SchoolKey

if TYPE_CHECKING:
    from tutorledger.domain.ledger import Ledger
    from tutorledger.infra.importers.oneroster import Limits
    from tutorledger.infra.importers.sessions import SessionImport

commands = typer.Typer()
R = TypeVar("R")


def _roster_import(event_store: str | None, run: Callable[[Ledger, Limits], R]) -> R:
    """Run one roster import on the settings' ledger: a refused file is one line naming
    the file and row (exit 1), any other failure its code (exit 2); the ledger is closed."""
    from tutorledger.domain.roster import InvalidRoster
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.importers.oneroster import Limits

    settings = load_settings(event_store=event_store)
    ledger = open_ledger(settings)
    try:
        return run(ledger, Limits.from_settings(settings))
    except InvalidRoster as exc:
        raise reject_file(exc) from None
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    finally:
        ledger.close()


def _district(value: str) -> str:
    if not re.fullmatch(DISTRICT_PATTERN, value):
        raise typer.BadParameter("1-64 characters of [A-Za-z0-9_.-]")
    return value


DistrictArg = Annotated[str, typer.Option("--district", help="District id", callback=_district)]
SourceArg = Annotated[Path, typer.Argument(exists=True, readable=True, help="File to import")]


@commands.command("import-roster")
def import_roster(
    path: Annotated[
        Path, typer.Argument(exists=True, help="OneRoster 1.1 CSV bundle: a .zip or a directory")
    ],
    district: DistrictArg,
    as_of: Annotated[
        date, typer.Option("--as-of", formats=["%Y-%m-%d"], help="Enrolment on this date")
    ],
    school_key: Annotated[
        str, typer.Option(help="orgs.csv column holding the school id emitters use")
    ] = "sourcedId",
    event_store: StoreOpt = None,
) -> None:
    """Record each school's enrolment by grade on a date, from a OneRoster roster."""
    from tutorledger.infra.importers.roster import import_roster as run_import

    if school_key not in ("sourcedId", "identifier"):
        raise typer.BadParameter("sourcedId or identifier", param_hint="--school-key")
    key: SchoolKey = "identifier" if school_key == "identifier" else "sourcedId"
    result = _roster_import(
        event_store, lambda ledger, limits: run_import(ledger, path, district, as_of, key, limits)
    )
    table = Table("school", "name", "enrolled", "status", "position", title=f"as of {as_of}")
    for s in result.schools:
        table.add_row(s.school_id, s.name, str(s.enrolled), s.status, str(s.position or ""))
    console.print(table)
    console.print(
        f"{result.students_counted} of {result.students_in_roster} students counted; "
        f"{result.in_several_schools} were in several schools (counted once), "
        f"{result.outside_k12} outside grades K-12"
    )
    typer.echo(json.dumps(result.as_dict()))


@commands.command("import-groups")
def import_groups(
    path: Annotated[
        Path,
        typer.Argument(
            exists=True,
            help="Roster bundle (.zip or directory): OneRoster users.csv with metadata.* flags "
            "and demographics.csv, or a Clever-style students.csv",
        ),
    ],
    district: DistrictArg,
    as_of: Annotated[date, typer.Option("--as-of", formats=["%Y-%m-%d"], help="The roster's date")],
    student_key: Annotated[
        str, typer.Option(help="users.csv column holding the student id emitters use")
    ] = "sourcedId",
    event_store: StoreOpt = None,
) -> None:
    """Record the roster's student groups (programmes, sex, race/ethnicity) by token."""
    from tutorledger.infra.importers.student_groups import StudentKey
    from tutorledger.infra.importers.student_groups import import_groups as run_import

    if student_key not in ("sourcedId", "identifier"):
        raise typer.BadParameter("sourcedId or identifier", param_hint="--student-key")
    key: StudentKey = "identifier" if student_key == "identifier" else "sourcedId"
    result = _roster_import(
        event_store, lambda ledger, limits: run_import(ledger, path, district, as_of, key, limits)
    )
    table = Table("group", "students", "position", title=f"roster of {as_of}")
    for code, size in result.groups.items():
        table.add_row(code, str(size), str(result.positions.get(code) or "unchanged"))
    console.print(table)
    typer.echo(json.dumps(result.as_dict()))


def mapping_path(name: str) -> Path:
    """A mapping file, or the name of one shipped with tutorledger (e.g. `tutorcom`)."""
    from tutorledger.infra.importers.session_mapping import shipped_mapping

    given = Path(name)
    if given.is_file():
        return given
    shipped = shipped_mapping(name)
    if shipped is not None:
        return shipped
    raise typer.BadParameter(f"no file {name!r} and no shipped mapping of that name")


def byte_progress() -> Progress:
    """Progress through the source file (bytes: right for ETA) with the event rate beside it."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def run_with_progress(job: SessionImport) -> dict[str, Any]:
    """Run an import with a bar over the source's bytes and the event rate beside it."""
    with byte_progress() as bar:
        task = bar.add_task("importing sessions", total=None, rate="")
        counted = [0]

        def started(total: int, done: int) -> None:
            bar.update(task, total=total, completed=done)

        def advanced(nbytes: int, events: int) -> None:
            counted[0] += events
            elapsed = bar.tasks[task].elapsed or 0.0
            rate = f"{counted[0] / elapsed:,.0f} ev/s" if elapsed else ""
            bar.update(task, advance=nbytes, rate=rate)

        return job.run(on_start=started, on_progress=advanced)


@commands.command("import-sessions")
def import_sessions(
    path: SourceArg,
    district: DistrictArg,
    mapping: Annotated[
        str, typer.Option(help="Mapping TOML file, or a shipped one by name: tutorcom")
    ],
    report: Annotated[
        Path | None, typer.Option(help="Report file (default: <source>.import-report.json)")
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            help="Provider named in each event's provenance (default: the mapping's name)",
            callback=lambda v: v if v is None else _district(v),
        ),
    ] = None,
    event_store: StoreOpt = None,
) -> None:
    """Import a vendor's session history (CSV or NDJSON); re-run to resume or to re-check.
    Each recorded event's chained provenance names the provider and the file's SHA-256."""
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.importers.session_mapping import RowConverter, load_mapping
    from tutorledger.infra.importers.sessions import SessionImport

    settings = load_settings(event_store=event_store)
    try:
        converter = RowConverter(
            load_mapping(mapping_path(mapping)), district, settings.district(district).time_zone
        )
    except TutorLedgerError as exc:
        console.print(f"[red]{exc.code}:[/] {exc.message} {exc.details or ''}", soft_wrap=True)
        raise typer.Exit(2) from None
    report = report or path.with_name(path.name + ".import-report.json")
    provider = provider or _district(Path(mapping).stem)
    ledger = open_ledger(settings)
    try:
        job = SessionImport(
            ledger, path, converter, report, context=settings.event_store, provider=provider
        )
        summary = run_with_progress(job)
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    finally:
        ledger.close()
    events = summary["events"]
    console.print(
        f"{summary['rows']:,} rows: {events['accepted']:,} events accepted, "
        f"{events['duplicate']:,} duplicates, {events['rejected']:,} rejected "
        f"{summary['rejected_by_code'] or ''}; report: {report}",
        soft_wrap=True,
    )
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "rejections"}))
