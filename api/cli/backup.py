"""`tutorledger backup DIR` and `tutorledger restore DIR` (merged into the CLI).

Backup copies the event store's database (everything the system of record holds) into a new
folder with a manifest. Restore checks the backup, refuses a store that holds anything,
copies it in, destroys again every key erased in the restored ledger or in the erasure
journal (kept outside the store: an erasure made after the backup), recomputes the hash
chains, and rebuilds the projections from the restored ledger. SQLite: all of that happens
on a file beside the target, renamed into place last, so nothing can serve the store before
the erasures are applied. docs/operations.md says how to schedule and keep backups.
Exit codes: 0 done, 1 the restored chain does not verify, 2 could not run (nothing changed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tutorledger.api.cli.common import ClickhouseOpt, StoreOpt, console, fail, load_settings
from tutorledger.api.cli.common import progress as progress_bar
from tutorledger.domain.errors import TutorLedgerError
from tutorledger.infra.settings import Settings

commands = typer.Typer()
FolderArg = Annotated[Path, typer.Argument(help="Backup folder", file_okay=False)]


def _bar_callback(bar: Any, description: str) -> Any:
    task = bar.add_task(description, total=None, rate="")

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return advance


@commands.command()
def backup(folder: FolderArg, event_store: StoreOpt = None) -> None:
    """Copy the event store (events, keys, disclosure log, sign-outs) into a new folder,
    with a manifest of digests and ledger heads; writers may go on meanwhile."""
    from tutorledger.infra.eventstore.backup import backup as run_backup

    settings = load_settings(event_store=event_store)
    try:
        with progress_bar() as bar:
            unit = "pages" if settings.store_kind == "sqlite" else "tables"
            manifest = run_backup(
                settings.event_store, folder, _bar_callback(bar, f"copying store ({unit})")
            )
    except TutorLedgerError as exc:
        raise fail(exc) from exc
    size = sum(f["bytes"] for f in manifest.files.values())
    console.print(
        f"[green]backed up:[/] {manifest.events:,} events up to position "
        f"{manifest.head_position}, {len(manifest.districts)} district(s), {size:,} bytes"
    )
    typer.echo(json.dumps({"folder": str(folder), **manifest.__dict__}))


def _journal(settings: Settings, paths: list[Path] | None, without: bool) -> list[Any]:
    """The erasures written down outside the store; a missing journal stops the restore
    (restoring without it could bring back a student erased after the backup)."""
    from tutorledger.infra.eventstore.erasure_journal import JournalUnreadable, read_journal

    if without:
        return []
    entries: list[Any] = []
    for path in paths or [settings.erasure_journal_path]:
        if not path.is_file():
            console.print(
                f"[red]no erasure journal at {path}:[/] pass --erasure-journal with the copy "
                "kept apart from the store, or --without-journal if no erasure can have "
                "happened since the backup (nothing changed)",
                soft_wrap=True,
            )
            raise typer.Exit(2)
        try:
            entries.extend(read_journal(path))
        except (OSError, JournalUnreadable) as exc:
            console.print(f"[red]erasure journal unreadable:[/] {exc} (nothing changed)")
            raise typer.Exit(2) from exc
    return entries


def _reapply(settings: Settings, journal: list[Any]) -> dict[str, int]:
    """Erasures applied again on the restored copy (SQLite: the staged file)."""
    from tutorledger.infra.eventstore.backup import sqlite_path, staging_path
    from tutorledger.infra.eventstore.reerase import reapply_erasures
    from tutorledger.infra.eventstore.store import open_ledger

    url = settings.event_store
    if settings.store_kind == "sqlite":
        url = f"sqlite:///{staging_path(sqlite_path(url)).resolve()}"
    ledger = open_ledger(settings.model_copy(update={"event_store": url}))
    try:
        return reapply_erasures(ledger, journal).as_dict()
    finally:
        ledger.close()


@commands.command()
def restore(
    folder: FolderArg,
    erasure_journal: Annotated[
        list[Path] | None,
        typer.Option(help="Erasure journal(s) to apply (default: TUTORLEDGER_ERASURE_JOURNAL)"),
    ] = None,
    without_journal: Annotated[
        bool, typer.Option(help="Apply only the erasures the backup itself records")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option(help="Rebuild the projections from the restored ledger")
    ] = True,
    event_store: StoreOpt = None,
    clickhouse: ClickhouseOpt = None,
) -> None:
    """Restore a backup into an empty store; erasures (the backup's and the journal's) are
    applied again before anything can serve it; then verify and rebuild the projections."""
    from tutorledger.infra.eventstore import backup as store_backup

    settings = load_settings(event_store=event_store, clickhouse=clickhouse)
    journal = _journal(settings, erasure_journal, without_journal)
    try:
        with progress_bar() as bar:
            manifest = store_backup.restore(
                settings.event_store, folder, _bar_callback(bar, "restoring store")
            )
        erasures = _reapply(settings, journal)
        if settings.store_kind == "sqlite":
            store_backup.finish_sqlite(settings.event_store)
    except TutorLedgerError as exc:
        store_backup.discard_staged(settings.event_store)
        raise fail(exc) from exc
    except BaseException:
        store_backup.discard_staged(settings.event_store)
        raise
    console.print(
        f"[green]restored:[/] {manifest.events:,} events up to position {manifest.head_position}; "
        f"erasures applied again: {erasures}",
        soft_wrap=True,
    )
    verified = _verify(settings)
    rebuilt = _rebuild(settings) if rebuild and verified else None
    typer.echo(json.dumps({"folder": str(folder), "events": manifest.events,
                           "head_position": manifest.head_position, "erasures": erasures,
                           "chain_ok": verified, "rebuilt_events": rebuilt}))  # fmt: skip
    if not verified:
        raise typer.Exit(1)


def _verify(settings: Settings) -> bool:
    from tutorledger.api.cli.common import metered
    from tutorledger.infra.eventstore.audit import verify_chain
    from tutorledger.infra.eventstore.store import open_ledger

    ledger = open_ledger(settings)
    try:
        with metered("verifying chain") as meter:
            report = verify_chain(
                ledger.recorder, ledger.mapper, on_start=meter.start, on_progress=meter.advance
            )
    finally:
        ledger.close()
    if not report.ok:
        console.print(f"[red]chain broken at position {report.first_bad_position}[/]")
    return report.ok


def _rebuild(settings: Settings) -> int:
    """The projections from the restored ledger: rows of positions the old ledger had past
    the backup must not stay in the figures."""
    from tutorledger.api.cli.audit import ledger_and_projections
    from tutorledger.api.cli.common import metered
    from tutorledger.consumers.rebuild import ledger_head
    from tutorledger.consumers.rebuild import rebuild as run_rebuild
    from tutorledger.projections.schema import migrate

    with ledger_and_projections(settings, "rebuild") as (ledger, store):
        migrate(store)
        with metered("rebuilding projections") as meter:
            meter.start(ledger_head(ledger))
            report = run_rebuild(ledger, store, on_progress=meter.advance)
    return report.events
