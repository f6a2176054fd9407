"""Privacy commands: erase one student, apply the retention period.

Merged into the `tutorledger` app. Like the other commands: the library does the work,
progress goes to stderr, one JSON result to stdout. Exit codes: 0 done, 1 nothing matched
(unknown student), 2 could not run. No command prints or logs a student id it was given.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Annotated, Protocol

import typer

from tutorledger.api.cli.common import StoreOpt, console, load_settings
from tutorledger.domain.errors import NotFound

commands = typer.Typer()


class IdleStudents(Protocol):
    """The retention query on the store's key table."""

    def idle_students(self, district_id: str, before: datetime) -> list[tuple[str, datetime]]:
        """(token, last activity) of live students with no activity since `before`."""
        ...


ReasonOpt = Annotated[
    str, typer.Option(help="Why, as a code: parent_request, contract_end, state_law, …")
]


@commands.command()
def erase(
    district: Annotated[str, typer.Option("--district", help="District id")],
    student: Annotated[str, typer.Option("--student", help="The district's student id")],
    reason: ReasonOpt,
    event_store: StoreOpt = None,
) -> None:
    """Erase one student: record the erasure and destroy their key (figures unchanged)."""
    import re

    from tutorledger.domain.erasure import REASON_PATTERN
    from tutorledger.infra.eventstore.store import open_ledger

    if not re.fullmatch(REASON_PATTERN, reason):
        raise typer.BadParameter("reason must be a code like parent_request", param_hint="--reason")
    settings = load_settings(event_store=event_store)
    ledger = open_ledger(settings)
    try:
        key = ledger.index.find_student(district, student)
        if key is None:
            console.print(f"[red]no such student in {district}[/] (unknown, or erased already)")
            raise typer.Exit(1)
        position = ledger.erase(district, key.token, reason)
    except NotFound as exc:
        console.print(f"[red]{exc.code}:[/] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        ledger.close()
    console.print(f"[green]erased[/] student token {key.token} at position {position}")
    typer.echo(
        json.dumps({"district_id": district, "student_token": key.token, "position": position})
    )


def cutoff(as_of: date, years: int) -> datetime:
    """The instant `years` before the start of `as_of` (29 February falls back to the 28th)."""
    try:
        day = as_of.replace(year=as_of.year - years)
    except ValueError:
        day = as_of.replace(year=as_of.year - years, day=28)
    return datetime.combine(day, time(0), UTC)


@commands.command()
def retention(
    apply: Annotated[bool, typer.Option("--apply", help="Shred them (default: only list)")] = False,
    district: Annotated[str | None, typer.Option("--district", help="One district")] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"], help="Today, for tests")
    ] = None,
    event_store: StoreOpt = None,
) -> None:
    """List (then with --apply shred) students with no activity in their district's
    `retention_years` (districts file); aggregates are kept."""
    from tutorledger.infra.eventstore.recorders import store_of
    from tutorledger.infra.eventstore.store import open_ledger

    settings = load_settings(event_store=event_store)
    today = (as_of or datetime.now(UTC)).date()
    districts = [district] if district else settings.configured_districts()
    ledger = open_ledger(settings)
    keys: IdleStudents = store_of(ledger)
    report = []
    try:
        for d in districts:
            years = settings.district(d).retention_years
            if years is None:
                continue
            before = cutoff(today, years)
            idle = keys.idle_students(d, before)
            shredded = 0
            for token, _ in idle if apply else []:
                shredded += ledger.erase(d, token, "retention", scrub=False) is not None
            if shredded:
                ledger.index.scrub()
            report.append(
                {
                    "district_id": d,
                    "retention_years": years,
                    "inactive_since_before": before.isoformat(),
                    "students": [
                        {"student_token": t, "last_activity": at.isoformat()} for t, at in idle
                    ],
                    "shredded": shredded,
                }
            )
            verb = "shredded" if apply else "would shred (run with --apply)"
            console.print(f"{d}: {len(idle)} inactive since {before.date()}; {verb}")
    finally:
        ledger.close()
    typer.echo(json.dumps(report))
