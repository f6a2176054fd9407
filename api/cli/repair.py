"""`tutorledger repair`: find ledger events missing below the projections' complete position,
and project them from the ledger (merged into the CLI).

Exit codes: 0 nothing missing, or everything missing was filled in; 1 `--dry-run` found
missing events (or ClickHouse holds positions the ledger does not); 2 could not run.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tutorledger.api.cli.audit import ledger_and_projections
from tutorledger.api.cli.common import ClickhouseOpt, StoreOpt, console, load_settings

commands = typer.Typer()


def claimed_position(settings: Any, ledger: Any, store: Any) -> int:
    """The position up to which the figures say they are complete (never past the head)."""
    from tutorledger.consumers.kafka_projector import stream_position
    from tutorledger.consumers.projector import projected_position

    claimed = projected_position(store) if settings.embedded_stream else stream_position(store)
    return min(claimed, int(ledger.recorder.max_notification_id() or 0))


@commands.command()
def repair(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report; exit 1 if any")] = False,
    upto: Annotated[
        int | None,
        typer.Option(min=0, help="Check up to this position (default: where figures claim)"),
    ] = None,
    event_store: StoreOpt = None,
    clickhouse: ClickhouseOpt = None,
) -> None:
    """Find ledger events the projections lack (a broker that lost acknowledged records) and
    project them from the ledger; JSON report on stdout."""
    from tutorledger.consumers.repair import repair as run_repair
    from tutorledger.projections.schema import migrate

    settings = load_settings(event_store=event_store, clickhouse=clickhouse)
    with ledger_and_projections(settings, "repair") as (ledger, store):
        migrate(store)
        limit = claimed_position(settings, ledger, store) if upto is None else upto
        report = run_repair(ledger, store, limit, dry_run=dry_run)
    if report.missing:
        done = "none filled in (--dry-run)" if dry_run else f"{report.repaired} filled in"
        console.print(f"[yellow]{len(report.missing)} event(s) missing up to {limit}[/]: {done}")
    if report.unexpected:
        console.print(f"[red]{len(report.unexpected)} projected position(s) not in the ledger[/]")
    typer.echo(json.dumps(report.as_dict()))
    if report.read_model_missing:
        console.print(f"[yellow]{len(report.read_model_missing)} read-model row(s) missing[/]")
    if report.unexpected or (dry_run and not report.ok):
        raise typer.Exit(1)
