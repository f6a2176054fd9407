"""Auditor and operator commands: verify, replay, rebuild, reconcile (merged into the CLI).

Thin like the routes: each opens the stores from settings, calls the library function
behind the matching endpoint, shows progress on stderr and writes its result on stdout.
Exit codes: 0 fine, 1 the check failed (tampering, drift), 2 could not run.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from tutorledger.api.cli.common import (
    ClickhouseOpt,
    StoreOpt,
    console,
    fail,
    load_settings,
    metered,
)
from tutorledger.domain.errors import MigrationIncomplete, ProjectionsInUse, TutorLedgerError

commands = typer.Typer()
DistrictOpt = Annotated[str | None, typer.Option("--district", help="One district (default: all)")]


# What to run instead while `tutorledger serve` holds the embedded projections (chdb lets
# one process open its data dir): one line each, printed instead of the lock error.
STOP_SERVE = "or stop `tutorledger serve` and run this again"
INSTEAD = {
    "rebuild": "while `tutorledger serve` runs, ask it: curl -X POST -H 'Authorization: Bearer "
    f"<admin key>' http://<host>:<port>/v1/admin/rebuild ({STOP_SERVE})",
    "replay": "while `tutorledger serve` runs, ask it for each figure: GET /v1/metrics/<metric>"
    f"?district_id=<d>&as_of_position=<n> with an auditor or admin key ({STOP_SERVE})",
    "reconcile": "the running `tutorledger serve` projects this ledger itself; stop it "
    "(Ctrl-C), run `tutorledger reconcile`, then start it again",
    "repair": "the running `tutorledger serve` projects this ledger itself; stop it (Ctrl-C), "
    "run `tutorledger repair` again, then start it again",
}


def projections_in_use(exc: ProjectionsInUse, command: str) -> typer.Exit:
    """One line, no traceback: the projections are held by a server, and what to do."""
    console.print(
        f"{exc.code}: {exc.message}; {INSTEAD[command]}",
        soft_wrap=True, markup=False, highlight=False,
    )  # fmt: skip
    return typer.Exit(2)


@contextmanager
def ledger_and_projections(settings: Any, command: str) -> Iterator[tuple[Any, Any]]:
    """The ledger and projection store, both closed after; an unusable store exits 2."""
    from tutorledger.infra.clickhouse import open_projection_store
    from tutorledger.infra.eventstore.store import open_ledger

    try:
        store = open_projection_store(settings)
    except ProjectionsInUse as exc:
        raise projections_in_use(exc, command) from exc
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    ledger = open_ledger(settings)
    try:
        yield ledger, store
    finally:
        store.close()
        ledger.close()


@commands.command()
def verify(district: DistrictOpt = None, event_store: StoreOpt = None) -> None:
    """Recompute the hash chain(s) from the event store; exit 1 at the first bad position.

    A migrated ledger's districts also show the old chain they continue (`continues`); a
    ledger `migrate-ledger` has not finished filling fails (migration_incomplete)."""
    from tutorledger.consumers import continuity
    from tutorledger.infra.eventstore.audit import verify_chain
    from tutorledger.infra.eventstore.store import open_ledger

    settings = load_settings(event_store=event_store)
    ledger = open_ledger(settings)
    try:
        with metered("verifying chain") as meter:
            report = verify_chain(
                ledger.recorder,
                ledger.mapper,
                district,
                on_start=meter.start,
                on_progress=meter.advance,
            )
        links = {d: v for d, v in continuity.links(ledger).items() if district in (None, d)}
        if report.ok and continuity.unfinished(ledger):
            report.ok, report.problem = False, MigrationIncomplete.code
    finally:
        ledger.close()
    rate = report.checked / report.seconds if report.seconds else 0.0
    if report.ok:
        console.print(
            f"[green]chain intact:[/] {report.checked:,} events in {report.seconds:.1f}s "
            f"({rate:,.0f} ev/s), {len(report.heads)} district(s)"
        )
    elif report.problem == MigrationIncomplete.code:
        console.print("[red]migration_incomplete:[/] run the same `migrate-ledger` again")
    else:
        console.print(
            f"[red]chain broken at position {report.first_bad_position}[/] "
            f"({report.problem}); {report.checked:,} events verified before it"
        )
    for d, link in sorted(links.items()):
        console.print(
            f"{d} continues a migrated ledger: old head {link['previous_head']} "
            f"({link['previous_events']:,} events; check with `tutorledger check-migration`)"
        )
    heads = {
        d: {"head_position": p, "head_hash": h} | ({"continues": links[d]} if d in links else {})
        for d, (p, h) in report.heads.items()
    }
    body = report.as_dict() | {"district_id": district, "districts": heads}
    typer.echo(json.dumps(body))
    if not report.ok:
        raise typer.Exit(1)


@commands.command()
def rebuild(
    batch_size: Annotated[int, typer.Option(min=1, help="Events per insert")] = 5000,
    event_store: StoreOpt = None,
    clickhouse: ClickhouseOpt = None,
) -> None:
    """Rebuild the projections from the ledger into a fresh table and swap it in.

    Refuses a ledger `migrate-ledger` has not finished (exit 2, migration_incomplete).
    """
    from tutorledger.consumers.continuity import refuse_unfinished_store
    from tutorledger.consumers.rebuild import ledger_head
    from tutorledger.consumers.rebuild import rebuild as run_rebuild
    from tutorledger.projections.schema import migrate

    settings = load_settings(event_store=event_store, clickhouse=clickhouse)
    try:  # before the projections are touched: a partial ledger must not replace them
        refuse_unfinished_store(settings.event_store)
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    with ledger_and_projections(settings, "rebuild") as (ledger, store):
        migrate(store)
        with metered("rebuilding projections") as meter:
            meter.start(ledger_head(ledger))
            report = run_rebuild(ledger, store, batch_size=batch_size, on_progress=meter.advance)
    console.print(
        f"[green]rebuilt:[/] {report.events:,} events up to position {report.position} "
        f"in {report.seconds:.1f}s ({report.rate:,.0f} ev/s)"
    )
    typer.echo(
        json.dumps(
            {
                "events": report.events,
                "position": report.position,
                "seconds": round(report.seconds, 3),
                "events_per_second": round(report.rate, 1),
            }
        )
    )


class ReportFormat(StrEnum):
    table = "table"
    json = "json"


@commands.command()
def reconcile(
    district: DistrictOpt = None,
    as_of_position: Annotated[
        int | None, typer.Option(min=0, help="Compare up to this position (default: head)")
    ] = None,
    output: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.table,
    event_store: StoreOpt = None,
    clickhouse: ClickhouseOpt = None,
) -> None:
    """Compare per-district, per-day (UTC) event counts: ledger vs projections; exit 1 on drift."""
    from tutorledger.consumers.reconcile import reconcile as run_reconcile

    settings = load_settings(event_store=event_store, clickhouse=clickhouse)
    with ledger_and_projections(settings, "reconcile") as (ledger, store):
        with metered("counting ledger events") as meter:
            report = run_reconcile(
                ledger.recorder,
                ledger.mapper,
                store,
                district,
                as_of_position,
                on_start=meter.start,
                on_progress=meter.advance,
            )
    if output is ReportFormat.json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        table = Table(title=f"drift up to position {report.position} (day = UTC date)")
        for column in ("district", "day", "ledger", "projections", "missing"):
            table.add_column(column, justify="left" if column in ("district", "day") else "right")
        for d in report.drift:
            counts = (d.ledger, d.projections, d.missing)
            table.add_row(d.district_id, d.day.isoformat(), *map(str, counts))
        if report.drift:
            console.print(table)
        typer.echo(
            f"{'OK' if report.ok else 'DRIFT'}: ledger {report.ledger_events} events, projections "
            f"{report.projected_events}, {report.days} district-days, {len(report.drift)} differ"
        )
    if not report.ok:
        raise typer.Exit(1)


class ReplayFormat(StrEnum):
    json = "json"
    csv = "csv"


def metric_answers(
    runtime: Any, district_id: str, date_from: date | None, date_to: date | None, as_of: int
) -> tuple[Any, dict[str, Any]]:
    """Every metric the API serves, built by the routes' own code (default grouping), so a
    replay is the API's answer by construction, not a second implementation of it."""
    from tutorledger.api.http.deps import covered
    from tutorledger.api.http.routes import metrics
    from tutorledger.infra.keys import Principal

    auditor = covered(Principal("auditor", frozenset({"*"})), district_id)
    scope = metrics.resolve_scope(
        runtime, auditor, None, None, None, date_from, date_to, as_of, None, csv=False
    )
    bodies = metrics.every_metric(runtime.projections, scope)
    return scope, {name: b.model_dump(mode="json", by_alias=True) for name, b in bodies.items()}


def flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Nested JSON as (dotted.path, scalar) pairs: one CSV line per figure."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(f"{prefix}.{key}" if prefix else str(key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from flatten(f"{prefix}.{i}", item)
    else:
        yield prefix, value


@commands.command()
def replay(
    as_of_position: Annotated[int, typer.Option(min=0, help="Ledger position to report as of")],
    district: DistrictOpt = None,
    date_from: Annotated[date | None, typer.Option("--from", formats=["%Y-%m-%d"])] = None,
    date_to: Annotated[date | None, typer.Option("--to", formats=["%Y-%m-%d"])] = None,
    output: Annotated[ReplayFormat, typer.Option("--format")] = ReplayFormat.json,
    event_store: StoreOpt = None,
    clickhouse: ClickhouseOpt = None,
) -> None:
    """Print every metric as of a ledger position: the same JSON the API answers then."""
    from tutorledger.api.runtime import Runtime

    settings = load_settings(event_store=event_store, clickhouse=clickhouse)
    try:
        runtime = Runtime.build(settings)
    except ProjectionsInUse as exc:
        raise projections_in_use(exc, "replay") from exc
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    try:
        behind = runtime.ledger_head() - runtime.projected_position()
        if runtime.follower is not None and behind > 0:  # embedded: catch projections up first
            with metered("projecting ledger") as meter:
                meter.start(behind)
                while count := runtime.follower.step():
                    meter.advance(count)
        districts = [district] if district else _districts(runtime, as_of_position)
        reports: list[dict[str, Any]] = []
        for d in districts:
            scope, answers = metric_answers(runtime, d, date_from, date_to, as_of_position)
            reports.append(
                {
                    "district_id": d,
                    "as_of_position": scope.filters.as_of_position,
                    "head_hash": scope.head_hash,
                    "metrics": answers,
                }
            )
    finally:
        runtime.stop()
    if output is ReplayFormat.json:
        typer.echo(json.dumps(reports[0] if district else reports, indent=2))
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["district_id", "as_of_position", "head_hash", "metric", "figure", "value"])
    for r in reports:
        lead = [r["district_id"], r["as_of_position"], r["head_hash"]]
        for name, body in r["metrics"].items():
            for path, value in flatten("", body):
                if path not in ("district_id", "as_of_position", "head_hash"):
                    writer.writerow([*lead, name, path, value])


def _districts(runtime: Any, as_of_position: int) -> list[str]:
    from tutorledger.projections.districts import known_districts

    return known_districts(runtime.projections, as_of_position)
