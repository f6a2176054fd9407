"""The `tutorledger` command line: thin wrappers over the runtime, with progress on long work.

Serving, demo data and the benchmark are here; the production relay and projector come from
``cli_stream``, the auditor and operator commands (verify, replay, rebuild, reconcile) from
``cli_audit``, the privacy commands (erase, retention) from ``cli_privacy``; import-grades
from ``cli_grades``.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tutorledger.api.cli import audit as cli_audit
from tutorledger.api.cli import backup as cli_backup
from tutorledger.api.cli import edfi as cli_edfi
from tutorledger.api.cli import grades as cli_grades
from tutorledger.api.cli import importing as cli_import
from tutorledger.api.cli import invoices as cli_invoices
from tutorledger.api.cli import keys as cli_keys
from tutorledger.api.cli import migrate as cli_migrate
from tutorledger.api.cli import privacy as cli_privacy
from tutorledger.api.cli import repair as cli_repair
from tutorledger.api.cli import stream as cli_stream
from tutorledger.api.cli.common import (
    ClickhouseOpt,
    StoreOpt,
    console,
    fail,
    load_settings,
    progress,
)
from tutorledger.bench.preflight import BenchUnavailable
from tutorledger.domain.errors import TutorLedgerError
from tutorledger.infra.settings import Settings

if TYPE_CHECKING:
    from tutorledger.domain.ledger import Ledger

app = typer.Typer(
    name="tutorledger",
    help="Event-sourced ledger and analytics for district tutoring programs.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(cli_audit.commands)
app.add_typer(cli_import.commands)
app.add_typer(cli_repair.commands)
app.add_typer(cli_privacy.commands)
app.add_typer(cli_migrate.commands)
app.add_typer(cli_grades.commands)
app.add_typer(cli_stream.commands)
app.add_typer(cli_keys.commands)
app.add_typer(cli_invoices.commands)
app.add_typer(cli_edfi.commands)
app.add_typer(cli_backup.commands)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (Kafka mode with a ClickHouse server)")
    ] = 1,
    event_store: StoreOpt = None,
    clickhouse: ClickhouseOpt = None,
) -> None:
    """Run the HTTP API (embedded stream: also the projector, in this process)."""
    import uvicorn

    from tutorledger.api.app import create_app
    from tutorledger.api.workers import WorkersRefused, run_workers

    settings = load_settings(event_store=event_store, clickhouse=clickhouse)
    refuse_unfinished_migration(settings)
    if settings.api_keys_file is None:
        keys_file = ensure_local_keys(settings, host, port)
        settings = settings.model_copy(update={"api_keys_file": keys_file})
    if settings.api_keys_file is not None:
        refuse_bad_keys_file(settings.api_keys_file)
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
        return
    try:
        run_workers(settings, host, port, workers)
    except WorkersRefused as exc:
        console.print(f"[red]{exc.code}:[/] {exc}")
        raise typer.Exit(2) from exc


def refuse_unfinished_migration(settings: Settings) -> None:
    """A half-migrated ledger: exit 2 with the typed error before any server starts (the
    runtime refuses it too, but inside uvicorn's startup, as a traceback and exit 3)."""
    from tutorledger.consumers.continuity import refuse_unfinished_store

    try:
        refuse_unfinished_store(settings.event_store)
    except TutorLedgerError as exc:
        raise fail(exc) from exc


def refuse_bad_keys_file(path: Path) -> None:
    """A keys file that cannot be used: one line naming the entry and field (never a key),
    exit 2, before any server starts (inside uvicorn's startup it would be a traceback)."""
    from tutorledger.infra.keys import KeysFileError, read_specs

    try:
        read_specs(path)
    except KeysFileError as exc:
        console.print(f"{exc.code}: {exc}", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(2) from None


def ensure_local_keys(settings: Settings, host: str, port: int) -> Path:
    """No keys file configured: keep one under var/ with an admin key, and say where."""
    from tutorledger.infra.keys import write_admin_keys_file

    keys_file = settings.var_dir / "api-keys.json"
    key_file = settings.var_dir / "admin-key.txt"
    if not keys_file.exists() or not key_file.exists():
        key = write_admin_keys_file(keys_file)
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
    key = key_file.read_text().strip()
    console.print(f"[bold]No TUTORLEDGER_API_KEYS_FILE set:[/] using {keys_file}", soft_wrap=True)
    console.print(f"Admin key (also in {key_file}): [bold]{key}[/]", soft_wrap=True)
    console.print(
        f"Dashboard: [bold]http://{host}:{port}/[/] (sign in with the admin key)",
        soft_wrap=True,
        highlight=False,
    )
    console.print(
        f"Try: curl -H 'Authorization: Bearer {key}' "
        f"'http://{host}:{port}/v1/metrics/participation?district_id=demo-district'",
        soft_wrap=True,
        highlight=False,
    )
    return keys_file


@app.command()
def demo(
    students: Annotated[int, typer.Option(min=1, help="Students in the district")] = 1500,
    schools: Annotated[int, typer.Option(min=1, help="Schools in the district")] = 8,
    days: Annotated[int, typer.Option(min=1, help="Days of activity")] = 28,
    seed: Annotated[
        int, typer.Option(help="Same seed, same district (re-runs are duplicates)")
    ] = 7,
    district: Annotated[str, typer.Option(help="District id")] = "demo-district",
    event_store: StoreOpt = None,
) -> None:
    """Fill the ledger with a synthetic district through the emitters' write path: an
    on-demand vendor and an in-house high-dosage programme (each event names its provider
    and emitter key, as a posted one does), and the roster's student groups."""
    from tutorledger.bench.demo import generate_demo
    from tutorledger.bench.district import DistrictSpec
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.importers.oneroster import Limits
    from tutorledger.infra.importers.student_groups import import_groups

    settings = load_settings(event_store=event_store)
    spec = DistrictSpec(
        district_id=district, schools=schools, students=students, days=days, seed=seed
    )
    generated = generate_demo(spec)
    ledger = open_ledger(settings)
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    try:
        put_schools(ledger, district, generated.district.schools)
        # The roster before the sessions, as a district imports it: a dashboard key sees
        # a position only once a later day's event publishes it, so groups recorded after
        # the last event would stay hidden from it.
        groups = import_groups(ledger, generated.roster, district, generated.as_of,
                               limits=Limits.from_settings(settings))  # fmt: skip
        with progress() as bar:
            task = bar.add_task("recording events", total=len(generated.events), rate="")
            for provenance, batch in generated.batches():
                for outcome in ledger.record_events(batch, provenance):
                    counts[outcome.status] += 1
                bar.update(task, advance=len(batch))
    finally:
        ledger.close()
    changed = "recorded" if any(p is not None for p in groups.positions.values()) else "unchanged"
    console.print(
        f"district [bold]{district}[/]: {len(generated.district.schools)} schools, "
        f"{counts['accepted']} events accepted, {counts['duplicate']} duplicates recognised, "
        f"{counts['rejected']} rejected; providers {', '.join(generated.key_ids)}; "
        f"roster of {groups.as_of}: {groups.students} students in {len(groups.groups)} groups, "
        f"{changed}"
    )
    roster = {"as_of": groups.as_of.isoformat(), "students": groups.students,
              "groups": len(groups.groups), "changed": changed == "recorded"}  # fmt: skip
    typer.echo(json.dumps({"district_id": district, **counts, "roster": roster}))


def put_schools(ledger: Ledger, district: str, schools: list[dict[str, Any]]) -> None:
    """Each school's enrolment, unless the ledger already holds it as it is."""
    for school in schools:
        current = ledger.get_school(district, school["school_id"])
        wanted = {
            "name": school["name"],
            "enrollment": school["enrollment"],
            "as_of": school["as_of"].isoformat(),
        }
        if current is None or current.latest != wanted:
            ledger.put_school(
                district, school["school_id"], school["name"], school["enrollment"],
                school["as_of"],
            )  # fmt: skip


@app.command()
def bench(
    size: Annotated[
        str, typer.Option(help="small (5k events), medium (100k), large (1M)")
    ] = "small",
    report: Annotated[Path, typer.Option(help="Where to write the JSON report")] = Path(
        "bench-report.json"
    ),
    postgres: Annotated[str | None, typer.Option(help="PostgreSQL URL for ingest")] = None,
    kafka: Annotated[str | None, typer.Option(help="Kafka bootstrap host:port")] = None,
    clickhouse: ClickhouseOpt = None,
    with_local_services: Annotated[
        bool, typer.Option(help="Start PostgreSQL, tansu and ClickHouse locally for the run")
    ] = False,
) -> None:
    """Measure every stage next to a raw baseline from the same run; no pass/fail."""
    import tempfile

    from rich.table import Table

    from tutorledger.bench.preflight import local_services_on_path, require_extra

    try:
        require_extra()
        if with_local_services:
            local_services_on_path()
    except BenchUnavailable as exc:
        raise fail(exc) from None
    from tutorledger.bench.suite import SIZES, run_suite

    if size not in SIZES:
        raise typer.BadParameter(f"size must be one of {', '.join(SIZES)}")
    load_settings()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as workdir:
        if with_local_services:
            postgres, kafka, clickhouse = start_local_services(stack, Path(workdir))
        console.print(f"benchmark size={size}; stages without servers are skipped")
        rows = run_suite(size, Path(workdir), postgres, kafka, clickhouse)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"size": size, "stages": rows}, indent=2) + "\n")
    table = Table("stage", "events", "events/s", "baseline", "baseline/s", "ratio", "latency")
    for r in rows:
        latency = " ".join(f"{k}={r[k]}" for k in ("p50_ms", "p95_ms", "p99_ms") if k in r)
        table.add_row(
            r["stage"], str(r["events"]), f"{r['events_per_second']:,.0f}", r["baseline"] or "",
            f"{r['baseline_events_per_second']:,.0f}" if r["baseline_events_per_second"] else "",
            str(r["ratio_to_baseline"] or ""), latency,
        )  # fmt: skip
    Console(width=160).print(table)
    console.print(f"report written to {report}")


def start_local_services(stack: ExitStack, workdir: Path) -> tuple[str, str, str]:
    """PostgreSQL, tansu and ClickHouse on loopback for one benchmark run (stopped after);
    a server that cannot start is one line saying what to install, and exit 2."""
    import uuid

    from devtools import services  # the checkout's (bench.preflight put it on the path)

    try:
        pg = services.ensure_postgres()
        stack.callback(pg.stop)  # callbacks run last-in first-out: the drop comes before the stop
        name = f"bench_{uuid.uuid4().hex[:8]}"
        dsn = services.create_database(name, pg)
        stack.callback(services.drop_database, name, pg)
        broker = services.start_tansu()
        stack.callback(broker.stop)
        server = services.start_clickhouse(workdir / "clickhouse")
        stack.callback(server.stop)
    except services.ServiceError as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise fail(BenchUnavailable(f"--with-local-services: {reason}")) from None
    return dsn, broker.bootstrap, server.url.rsplit("/", 1)[0] + "/bench"


def main() -> None:
    app()
