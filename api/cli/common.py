"""What every `tutorledger` command shares: console, settings, progress bars, options, exits.

Kept apart from the command modules so they can all use it without importing each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tutorledger.domain.errors import TutorLedgerError
from tutorledger.infra.settings import Settings

console = Console(stderr=True)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with CLI flags taking precedence."""
    from tutorledger.infra.logging import configure

    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    configure(settings.log_level)
    return settings


def progress() -> Progress:
    """A progress bar with count, rate-derived ETA and elapsed time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


StoreOpt = Annotated[
    str | None, typer.Option("--event-store", help="Overrides TUTORLEDGER_EVENT_STORE")
]
ClickhouseOpt = Annotated[
    str | None, typer.Option("--clickhouse", help="Overrides TUTORLEDGER_CLICKHOUSE")
]


class Meter:
    """Feeds a rich progress bar from library callbacks: a total first, then increments."""

    def __init__(self, bar: Progress, description: str) -> None:
        self.bar = bar
        self.task: TaskID = bar.add_task(description, total=None, rate="")

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total)

    def advance(self, count: int) -> None:
        self.bar.update(self.task, advance=count)
        speed = self.bar.tasks[self.task].speed  # rich's moving average
        if speed:
            self.bar.update(self.task, rate=f"{speed:,.0f} ev/s")


@contextmanager
def metered(description: str) -> Iterator[Meter]:
    with progress() as bar:
        yield Meter(bar, description)


def fail(exc: TutorLedgerError) -> typer.Exit:
    """A store we cannot use is an operator problem (exit 2), not a failed check (exit 1)."""
    # Escaped: a message may hold brackets (`tutorledger[bench]`) rich would take for markup.
    console.print(f"[red]{exc.code}:[/] {escape(exc.message)}", soft_wrap=True)
    return typer.Exit(2)


def reject_file(exc: TutorLedgerError) -> typer.Exit:
    """A file that failed validation: its first problems by line, then the typed error as JSON."""
    for p in (exc.details or [])[:20]:
        column = escape(f" [{p['column']}]") if "column" in p else ""  # not rich markup
        console.print(f"[red]{p['file']}:{p['line']}[/]{column} {escape(p['problem'])}",
                      soft_wrap=True)  # fmt: skip
    console.print(f"[red]{exc.code}:[/] {exc.message}")
    typer.echo(json.dumps({"error": exc.as_dict()}))
    return typer.Exit(1)
