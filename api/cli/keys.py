"""`tutorledger keys add | list | revoke`: manage the keys file (TUTORLEDGER_API_KEYS_FILE).

Thin over infra/key_admin.py, which writes the file atomically; a running server picks each
change up within seconds (no restart). `add` prints the new key once, alone on stdout, so
`KEY=$(tutorledger keys add …)` captures it; only its SHA-256 is stored. Everything else goes
to stderr. Exit codes: 0 done, 1 refused (the keys file cannot be used, or no single key
matches the id; nothing changed), 2 bad options or no keys file configured.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tutorledger.api.cli.common import StoreOpt, console, load_settings
from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.infra.keys import GRANTS, KeysFileError, Role

keys = typer.Typer(help="Add, list and revoke API keys (the keys file).", no_args_is_help=True)
commands = typer.Typer()
commands.add_typer(keys, name="keys")

KeysFileOpt = Annotated[
    Path | None, typer.Option("--keys-file", help="Overrides TUTORLEDGER_API_KEYS_FILE")
]


def _keys_file(override: Path | None) -> Path:
    """--keys-file, else TUTORLEDGER_API_KEYS_FILE, else the one a bare `serve` keeps in
    var/ (`make run`'s), when it exists."""
    settings = load_settings()
    local = settings.var_dir / "api-keys.json"
    path = override or settings.api_keys_file or (local if local.exists() else None)
    if path is None:
        console.print("no keys file: set TUTORLEDGER_API_KEYS_FILE or pass --keys-file")
        raise typer.Exit(2)
    return path


def _refused(exc: KeysFileError) -> typer.Exit:
    console.print(f"{exc.code}: {exc}", soft_wrap=True, highlight=False, markup=False)
    return typer.Exit(1)


def _role(value: str) -> str:
    if value not in GRANTS:
        raise typer.BadParameter(f"one of {', '.join(GRANTS)}")
    return value


def _districts(values: list[str]) -> list[str]:
    found = [d.strip() for v in values for d in v.split(",") if d.strip()]
    bad = [d for d in found if d != "*" and not re.fullmatch(DISTRICT_PATTERN, d)]
    if bad or not found:
        raise typer.BadParameter("district ids ([A-Za-z0-9_.-]{1,64}) or '*' for all")
    return list(dict.fromkeys(found))


def _provider(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(DISTRICT_PATTERN, value):
        raise typer.BadParameter("1-64 characters of [A-Za-z0-9_.-]")
    return value


def _expiry(value: str | None) -> datetime | None:
    """A date (the key works through that day, UTC) or an ISO 8601 time with an offset."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            at = datetime.combine(date.fromisoformat(value) + timedelta(days=1), time(), UTC)
        else:
            at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("YYYY-MM-DD or an ISO 8601 time", param_hint="--expires") from None
    if at.tzinfo is None:
        raise typer.BadParameter("give the time's UTC offset", param_hint="--expires")
    if at <= datetime.now(UTC):
        raise typer.BadParameter("already past", param_hint="--expires")
    return at


@keys.command("add")
def add(
    role: Annotated[str, typer.Option(help="emitter, dashboard, auditor or admin", callback=_role)],
    districts: Annotated[
        list[str], typer.Option("--districts", help="District ids (repeat, or a,b); '*' = all")
    ],
    provider: Annotated[
        str | None,
        typer.Option(help="Provider whose sessions the key posts (emitters)", callback=_provider),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="YYYY-MM-DD (works through that day, UTC) or ISO time with offset"),
    ] = None,
    keys_file: KeysFileOpt = None,
) -> None:
    """Create a key: printed once on stdout, only its SHA-256 is stored."""
    from tutorledger.infra.key_admin import KeysFile

    path = _keys_file(keys_file)
    role_: Role = next(r for r in GRANTS if r == role)  # checked by _role
    try:
        key, row = KeysFile(path).add(role_, _districts(districts), provider, _expiry(expires))
    except KeysFileError as exc:
        raise _refused(exc) from None
    typer.echo(key)
    console.print(
        f"key {row.key_id} added to {path} ({row.role}, {', '.join(row.districts)}); "
        "it is shown only this once",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


@keys.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `keys list` shows it")],
    keys_file: KeysFileOpt = None,
) -> None:
    """Turn a key away (the entry stays, marked revoked); servers stop it within seconds."""
    from tutorledger.infra.key_admin import KeysFile

    path = _keys_file(keys_file)
    try:
        row, was_live = KeysFile(path).revoke(key_id)
    except KeysFileError as exc:
        raise _refused(exc) from None
    said = "revoked" if was_live else "was already revoked"
    console.print(f"key {row.key_id} {said}", highlight=False, markup=False)


@keys.command("list")
def list_keys(
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    keys_file: KeysFileOpt = None,
    event_store: StoreOpt = None,
) -> None:
    """Ids, roles, districts, providers, status and when each key was last used."""
    from tutorledger.infra.key_admin import KeysFile

    if output not in ("table", "json"):
        raise typer.BadParameter("table or json", param_hint="--format")
    path = _keys_file(keys_file)
    try:
        rows = KeysFile(path).rows()
    except KeysFileError as exc:
        raise _refused(exc) from None
    used = _last_used(event_store)
    now = datetime.now(UTC)
    items = [
        {
            "id": r.key_id,
            "role": r.role,
            "districts": list(r.districts),
            "provider": r.provider,
            "status": r.status(now),
            "expires_at": _iso(r.expires_at),
            "last_used": None if used is None else _iso(used.get(r.key_id)),
        }
        for r in rows
    ]
    if output == "json":
        typer.echo(json.dumps(items, indent=2))
        return
    _table(items, known=used is not None)


def _last_used(event_store: str | None) -> dict[str, datetime] | None:
    """Key id → last use, from the event store the servers write it to; None if unreadable."""
    from tutorledger.infra.eventstore.key_usage import KeyUsage
    from tutorledger.infra.eventstore.store import open_ledger, store_env

    settings = load_settings(event_store=event_store)
    if settings.store_kind == "sqlite":  # none there: say so rather than make an empty one
        db = store_env(settings.event_store)["SQLITE_DBNAME"]
        if not Path(db).exists():
            console.print(f"last use unknown: no event store at {db}", highlight=False)
            return None
    try:
        ledger = open_ledger(settings)
    except Exception as exc:
        console.print(f"last use unknown: the event store cannot be opened ({type(exc).__name__})")
        return None
    try:
        return KeyUsage(ledger.recorder).last_used()
    except Exception as exc:
        console.print(f"last use unknown: it cannot be read ({type(exc).__name__})")
        return None
    finally:
        ledger.close()


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _table(items: list[dict[str, Any]], known: bool) -> None:
    table = Table("id", "role", "districts", "provider", "status", "expires", "last used")
    for i in items:
        last = i["last_used"] or ("never" if known else "unknown")
        table.add_row(i["id"], i["role"], ", ".join(i["districts"]), i["provider"] or "",
                      i["status"], i["expires_at"] or "", last)  # fmt: skip
    Console(soft_wrap=True).print(table)  # stdout: the listing is the command's output
