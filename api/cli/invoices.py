"""`tutorledger reconcile-invoice`: a provider's billed sessions against the ledger.

Thin over consumers/invoices.py. The report goes to stdout (or `--out`) as JSON or CSV; a
summary and the report's digest go to stderr. Exit codes: 0 a report was made (its findings
are its content), 1 the invoice was refused (each malformed row named by line; nothing
recorded), 2 could not run (a mapping that cannot be used, a store that cannot be opened).
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from tutorledger.api.cli.common import StoreOpt, console, fail, load_settings, reject_file
from tutorledger.api.cli.importing import DistrictArg
from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.domain.errors import TutorLedgerError

commands = typer.Typer()
CSV_COLUMNS = ("kind", "line", "session_id", "billed_at", "started_at", "billed_minutes",
               "recorded_minutes", "difference", "amount", "reason", "sessions")  # fmt: skip
_TOTAL_MINUTES = {"billed": "billed_minutes", "minute_differences": "difference"}


def _provider(value: str) -> str:
    if not re.fullmatch(DISTRICT_PATTERN, value):
        raise typer.BadParameter("1-64 characters of [A-Za-z0-9_.-]")
    return value


@commands.command("reconcile-invoice")
def reconcile_invoice(
    source: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="Invoice file")
    ],
    provider: Annotated[
        str, typer.Option(help="Provider who sent the invoice", callback=_provider)
    ],
    district: DistrictArg,
    mapping: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Invoice mapping (TOML)")
    ] = None,
    tolerance_minutes: Annotated[
        float, typer.Option(min=0, help="Minute differences up to this are not reported")
    ] = 0.0,
    window_minutes: Annotated[
        int, typer.Option(min=0, help="A row by time and student: how far the session may start")
    ] = 30,
    period_from: Annotated[
        str | None, typer.Option("--from", help="First day billed (YYYY-MM-DD, district time)")
    ] = None,
    period_to: Annotated[
        str | None, typer.Option("--to", help="Last day billed (YYYY-MM-DD, district time)")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
    out: Annotated[Path | None, typer.Option(help="Write the report here, not stdout")] = None,
    event_store: StoreOpt = None,
) -> None:
    """Billed but not recorded, recorded but not billed, minute differences, and totals."""
    from tutorledger.consumers.invoices import InvoiceCheck
    from tutorledger.consumers.invoices import reconcile_invoice as run
    from tutorledger.domain.invoice import Period
    from tutorledger.infra.eventstore.store import open_ledger
    from tutorledger.infra.importers.invoices import load_invoice_mapping

    if output not in ("json", "csv"):
        raise typer.BadParameter("json or csv", param_hint="--format")
    settings = load_settings(event_store=event_store)
    period = _period(period_from, period_to)
    try:
        check = InvoiceCheck(
            source, load_invoice_mapping(mapping, source), district, provider,
            settings.district(district).time_zone, Decimal(str(tolerance_minutes)),
            window_minutes, None if period is None else Period(*period),
        )  # fmt: skip
    except TutorLedgerError as exc:  # the mapping: as import-sessions says it
        console.print(f"{exc.code}: {exc.message} {exc.details or ''}", soft_wrap=True,
                      highlight=False, markup=False)  # fmt: skip
        raise typer.Exit(2) from None
    ledger = open_ledger(settings)
    try:
        body = run(ledger, check)
    except TutorLedgerError as exc:
        raise (reject_file(exc) if exc.code == "invalid_invoice" else fail(exc)) from None
    finally:
        ledger.close()
    text = json.dumps(body, indent=2) + "\n" if output == "json" else as_csv(body)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
    _summary(body)


def _period(first: str | None, last: str | None) -> tuple[date, date] | None:
    if first is None and last is None:
        return None
    if first is None or last is None:
        raise typer.BadParameter("give both --from and --to, or neither")
    try:
        span = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise typer.BadParameter("YYYY-MM-DD", param_hint="--from/--to") from None
    if span[0] > span[1]:
        raise typer.BadParameter("--from is after --to")
    return span


def as_csv(body: dict[str, Any]) -> str:
    """One row per finding, then one `total` row per total (its name in `reason`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in body["billed_not_recorded"]:
        writer.writerow({**row, "kind": "billed_not_recorded", "billed_minutes": row["minutes"]})
    for row in body["recorded_not_billed"]:
        writer.writerow({**row, "kind": "recorded_not_billed", "recorded_minutes": row["minutes"]})
    for row in body["minute_differences"]:
        writer.writerow({**row, "kind": "minute_difference", "billed_minutes": row["minutes"]})
    for name, total in body["totals"].items():
        column = _TOTAL_MINUTES.get(name, "recorded_minutes")
        writer.writerow({"kind": "total", "reason": name, "sessions": total["sessions"],
                         column: total.get("minutes"), "amount": total.get("amount")})  # fmt: skip
    return buffer.getvalue()


def _summary(body: dict[str, Any]) -> None:
    t = body["totals"]
    console.print(
        f"billed {t['billed']['sessions']} sessions ({t['billed']['amount']}); "
        f"billed not recorded {t['billed_not_recorded']['sessions']}, "
        f"recorded not billed {t['recorded_not_billed']['sessions']}, "
        f"minute differences {t['minute_differences']['sessions']}; "
        f"report sha256 {body['report_sha256']} (kept in the audit log)",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
