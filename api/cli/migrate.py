"""Migration commands: `migrate-ledger` (plaintext ledger → sealed one) and `check-migration`
(the auditor's continuity check). Merged into the `tutorledger` app.

Exit codes as elsewhere: 0 done, 1 the check failed, 2 could not run (a typed error with
its machine code: source_empty, source_already_sealed, source_chain_broken,
target_not_empty, migration_rejected, migration_error).
"""

from __future__ import annotations

import json
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Annotated

import typer

from tutorledger.api.cli.common import console, fail, load_settings, metered
from tutorledger.domain.errors import TutorLedgerError

commands = typer.Typer()
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="The old (plaintext) ledger: sqlite:///path or postgresql://…/db. It is only "
        "read, never changed. Default: TUTORLEDGER_EVENT_STORE.",
    ),
]
ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        help="Where the sealed ledger is written: a NEW SQLite file or an empty PostgreSQL "
        "database (create it first). Default for a SQLite source: <name>-sealed.db beside it.",
    ),
]


def default_target(source: str) -> str:
    if not source.startswith("sqlite://"):
        raise typer.BadParameter("give --to for a PostgreSQL source", param_hint="--to")
    path = Path(source.removeprefix("sqlite:///"))
    return f"sqlite:///{path.with_name(path.stem + '-sealed' + (path.suffix or '.db'))}"


@commands.command("migrate-ledger")
def migrate_ledger(
    source: FromOpt = None,
    target: ToOpt = None,
    page_size: Annotated[int, typer.Option(min=1, help="Old events per transaction")] = 1000,
) -> None:
    """Copy a ledger written before sealed storage into a new, sealed ledger.

    Every old event goes through the normal write path: ids, order and timestamps kept.

    Student ids, topics and comments are sealed under new per-student keys.

    Each district's new chain opens with a `ledger.migrated` entry: the old head hash and count.

    Interrupted? Run the same command again: it resumes where it stopped.

    Afterwards: `tutorledger check-migration --old … --new …`, then point
    TUTORLEDGER_EVENT_STORE at the new ledger. The old one is kept until you remove it.
    """
    from tutorledger.consumers.migrate import migrate, open_target
    from tutorledger.infra.eventstore.legacy import open_store, redacted

    settings = load_settings()
    source = source or settings.event_store
    target = target or default_target(source)
    try:
        with ExitStack() as stores:
            old = stores.enter_context(closing(open_store(source, read_only=True)))
            new = stores.enter_context(closing(open_target(target)))
            with metered("migrating ledger") as meter:
                report = migrate(
                    old, new, page=page_size, on_start=meter.start, on_progress=meter.advance
                )
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    rate = report.migrated / report.seconds if report.seconds else 0.0
    console.print(
        f"[green]migrated[/] {report.migrated:,} events in {report.seconds:.1f}s "
        f"({rate:,.0f} ev/s), {len(report.heads)} district(s) → {redacted(target)}"
    )
    heads = {d: {"previous_head": h.chain_hash, "previous_events": h.events}
             for d, h in report.heads.items()}  # fmt: skip
    typer.echo(
        json.dumps(
            {
                "target": redacted(target),
                "events": report.total,
                "migrated": report.migrated,
                "resumed_after": report.resumed_after,
                "districts": heads,
            }  # fmt: skip
        )
    )


@commands.command("check-migration")
def check_migration(
    old: Annotated[str, typer.Option("--old", help="The old (plaintext) ledger's URL")],
    new: Annotated[str, typer.Option("--new", help="The migrated ledger's URL")],
) -> None:
    """Prove continuity between an old ledger and its migrated copy.

    Recomputes the old ledger's chains from its events (stored hashes are not trusted).

    Compares each district's head hash and event count with the new ledger's first entry.

    Exit 1 if any differs. Run `tutorledger verify` on the new ledger as well.
    """
    from tutorledger.consumers.continuity import check
    from tutorledger.infra.eventstore.legacy import open_store

    try:
        with ExitStack() as stores:
            before = stores.enter_context(closing(open_store(old, read_only=True)))
            after = stores.enter_context(closing(open_store(new, read_only=True)))
            with metered("verifying old chain") as meter:
                ok, problem, result = check(before, after, meter.start, meter.advance)
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    for link in result:
        colour = "green" if link.ok else "red"
        console.print(f"[{colour}]{link.district_id}[/]: old head {link.old_head} "
                      f"({link.old_events:,} events), recorded {link.recorded_head}")  # fmt: skip
    if problem:
        console.print(f"[red]{problem}[/]")
    body = {"ok": ok, "problem": problem, "districts": {x.district_id: x.as_dict() for x in result}}
    typer.echo(json.dumps(body))
    if not ok:
        raise typer.Exit(1)
