"""`tutorledger export-edfi`: a district's tutoring as Ed-Fi v5 intervention files.

Merged into the `tutorledger` app. Writes the three resource files into `--out` (the same
bytes as the admin route's `files`, each serialised with sorted keys), and prints one JSON
result to stdout. The export discloses student ids: `--purpose` is required and the export is
recorded in the disclosure log under the key id `cli`, role `admin`. Exit codes: 0 written,
2 could not run.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from tutorledger.api.cli.common import ClickhouseOpt, StoreOpt, console, fail, load_settings
from tutorledger.domain.errors import TutorLedgerError

commands = typer.Typer()
CLI_KEY_ID = "cli"


@commands.command("export-edfi")
def export_edfi(
    district: Annotated[str, typer.Option("--district", help="District id")],
    date_from: Annotated[date, typer.Option("--from", formats=["%Y-%m-%d"], help="First day")],
    date_to: Annotated[date, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day")],
    purpose: Annotated[str, typer.Option("--purpose", help="Why (recorded as a disclosure)")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the JSON files into")],
    as_of_position: Annotated[
        int | None, typer.Option(min=0, help="Ledger position (default: the head)")
    ] = None,
    event_store: StoreOpt = None,
    clickhouse: ClickhouseOpt = None,
) -> None:
    """Export Intervention, StudentInterventionAssociation and attendance-event files."""
    from tutorledger.api.http.disclose import require_purpose
    from tutorledger.api.http.edfi_export import export_edfi as build
    from tutorledger.api.http.routes.metrics import resolve_filters
    from tutorledger.api.runtime import Runtime
    from tutorledger.infra.keys import Principal

    settings = load_settings(event_store=event_store, clickhouse=clickhouse)
    principal = Principal(role="admin", districts=frozenset({district}), key_id=CLI_KEY_ID)
    try:
        stated = require_purpose(purpose)
        runtime = Runtime.build(settings)
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    try:
        filters, head, _ = resolve_filters(
            runtime, district, None, None, None, date_from, date_to, as_of_position
        )
        done = build(runtime, principal, stated, filters, head, "tutorledger export-edfi")
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    finally:
        runtime.stop()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in done.files.items():
        (out / name).write_bytes(data)
    console.print(f"[green]wrote[/] {len(done.files)} files for {done.students} students to {out}")
    result = {
        "district_id": done.district_id,
        "as_of_position": done.as_of_position,
        "head_hash": done.head_hash,
        "students": done.students,
        "attendance_events": done.attendance_events,
        "files": sorted(done.files),
    }
    typer.echo(json.dumps(result))
