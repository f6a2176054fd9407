"""Keys and dashboard sessions end without a restart: the keys file is followed (a removed,
revoked or expired key fails within seconds, over Bearer and through its cookie), a file
that does not parse keeps the keys in force and says where it is wrong (never the key), and
signing out ends the session on the server, for every process sharing the event store."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tutorledger.api.app import create_app
from tutorledger.api.cli.main import app as cli
from tutorledger.api.dashboard.session import COOKIE
from tutorledger.infra.eventstore.signouts import SignOuts
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.keys import KeysFileError, KeyStore, read_specs
from tutorledger.infra.settings import Settings

STAYS = "revoke-stays-key-" + "0" * 16
GOES = "revoke-goes-key-" + "1" * 16
ADMIN = "revoke-admin-key-" + "2" * 16
METRIC = "/v1/metrics/participation?district_id=d1"
WAIT_SECONDS = 20.0  # the bound on every wait below; the file is checked once a second


def spec(key: str, role: str = "dashboard", **extra: Any) -> dict[str, Any]:
    return {"key_sha256": hashlib.sha256(key.encode()).hexdigest(), "role": role,
            "districts": ["d1"], **extra}  # fmt: skip


def replace_file(path: Path, text: str) -> None:
    """Write the keys file as operators should: a whole new file renamed into place."""
    fresh = path.with_suffix(".tmp")
    fresh.write_text(text)
    os.replace(fresh, path)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (bounded by WAIT_SECONDS); fail naming `what` if it never holds."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS} s: {what}")
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path, chdb_dir: Path) -> Iterator[tuple[TestClient, Path]]:
    keys = tmp_path / "keys.json"
    replace_file(keys, json.dumps([spec(STAYS), spec(GOES), spec(ADMIN, "admin")]))
    settings = Settings(
        event_store=f"sqlite:///{tmp_path}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}",
        api_keys_file=keys,
        var_dir=tmp_path / "var",
        session_secret="revocation-secret",
    )
    with TestClient(create_app(settings), base_url="http://dash.test") as client:
        yield client, keys


def bearer(client: TestClient, key: str) -> int:
    return client.get(METRIC, headers={"Authorization": f"Bearer {key}"}).status_code


def cookie_of(client: TestClient, key: str) -> str:
    client.cookies.clear()
    response = client.post("/signin", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303
    client.cookies.clear()
    return response.cookies[COOKIE]


def visit(client: TestClient, cookie: str) -> Any:
    client.cookies.clear()
    client.cookies.set(COOKIE, cookie, domain="dash.test")
    return client.get("/dashboard/d1", follow_redirects=False)


def page(client: TestClient, cookie: str) -> int:
    return int(visit(client, cookie).status_code)


def test_a_removed_key_and_its_cookie_fail_within_seconds_without_restart(
    served: tuple[TestClient, Path],
) -> None:
    client, keys = served
    goes, stays = cookie_of(client, GOES), cookie_of(client, STAYS)
    assert (bearer(client, GOES), page(client, goes)) == (200, 200)
    replace_file(keys, json.dumps([spec(STAYS), spec(ADMIN, "admin")]))
    wait_until(lambda: bearer(client, GOES) == 401, "the removed key refused over Bearer")
    assert page(client, goes) == 303  # its cookie: back to the sign-in form
    assert (bearer(client, STAYS), page(client, stays)) == (200, 200)
    # Put back, it works again (the cookie too: it names the key, which is known again).
    replace_file(keys, json.dumps([spec(STAYS), spec(GOES), spec(ADMIN, "admin")]))
    wait_until(lambda: bearer(client, GOES) == 200, "the restored key accepted")
    assert page(client, goes) == 200


def test_a_revoked_or_expired_entry_fails_over_bearer_and_cookie(
    served: tuple[TestClient, Path],
) -> None:
    client, keys = served
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    goes = cookie_of(client, GOES)
    replace_file(keys, json.dumps([spec(STAYS, expires_at=past), spec(GOES, revoked=True),
                                   spec(ADMIN, "admin")]))  # fmt: skip
    wait_until(lambda: bearer(client, GOES) == 401, "the revoked key refused")
    assert bearer(client, STAYS) == 401 and page(client, goes) == 303
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    replace_file(keys, json.dumps([spec(STAYS, expires_at=later), spec(ADMIN, "admin")]))
    wait_until(lambda: bearer(client, STAYS) == 200, "a key expiring tomorrow accepted")


def test_a_cookie_replayed_after_sign_out_goes_to_sign_in(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    cookie, other = cookie_of(client, STAYS), cookie_of(client, STAYS)
    assert page(client, cookie) == 200
    client.cookies.clear()
    client.cookies.set(COOKIE, cookie, domain="dash.test")
    out = client.post("/signout", follow_redirects=False)
    assert out.status_code == 303
    replayed = visit(client, cookie)
    assert replayed.status_code == 303 and replayed.headers["location"].startswith("/?next=")
    assert page(client, other) == 200  # another session of the same key is not ended


def test_a_sign_out_from_another_site_ends_nothing(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    cookie = cookie_of(client, STAYS)
    client.cookies.set(COOKIE, cookie, domain="dash.test")
    client.post("/signout", headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert page(client, cookie) == 200


def test_sign_outs_are_seen_by_every_process_sharing_the_event_store(tmp_path: Path) -> None:
    """Two ledgers opened on one store stand for two `serve --workers` processes."""
    settings = Settings(event_store=f"sqlite:///{tmp_path}/shared.db")
    one, two = open_ledger(settings), open_ledger(settings)
    try:
        here, there = SignOuts(one.recorder), SignOuts(two.recorder)
        lapses = datetime.now(UTC) + timedelta(hours=8)
        assert not there.ended("session-a")
        here.end("session-a", lapses)
        here.end("session-a", lapses)  # twice (a double click) is still one sign-out
        assert there.ended("session-a") and not there.ended("session-b")
        there.end("session-old", datetime.now(UTC) - timedelta(seconds=5))
        here.end("session-c", lapses)  # each sign-out clears those already lapsed
        assert not here.ended("session-old") and here.ended("session-a")
    finally:
        one.close()
        two.close()


# -- the keys file, reloaded or refused -------------------------------------------------------


def test_a_half_written_or_bad_file_keeps_the_keys_and_logs_one_line_without_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.json"
    replace_file(path, json.dumps([spec(STAYS), spec(GOES)]))
    store = KeyStore.from_file(path, recheck=0.0)
    short = "tl_short_secret"  # a real key, too short: the error must not repeat it
    whole = json.dumps([spec(STAYS), {"key": short, "role": "dashboard", "districts": ["d1"]}])
    with caplog.at_level(logging.INFO, logger="tutorledger.infra.keys"):
        path.write_text(whole[: len(whole) // 2])  # in place, half-way through a write
        assert store.authenticate(GOES) is not None  # the keys in force are kept
        path.write_text(whole)
        assert store.authenticate(GOES) is not None and store.authenticate(STAYS) is not None
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 2, lines
    assert "not JSON" in lines[0] and "\n" not in lines[0]
    assert "entry 2, field 'key'" in lines[1] and "at least 16 characters" in lines[1]
    assert all(short not in str(vars(r)) for r in caplog.records)
    replace_file(path, json.dumps([spec(STAYS)]))
    assert store.authenticate(GOES) is None and store.authenticate(STAYS) is not None


@pytest.mark.parametrize(
    ("entries", "where"),
    [
        ([{"key": "tl_short_secret", "role": "admin", "districts": ["*"]}], "entry 1, field 'key'"),
        ([{"tl_short_secret": 1, "role": "admin", "districts": ["*"]}], "entry 1, an unknown"),
        ([spec(STAYS), {"key_sha256": "tl_short_secret", "role": "x", "districts": []}],
         "entry 2, field"),
        ({"key": "tl_short_secret"}, "the file: Input should be a valid list"),
    ],
)  # fmt: skip
def test_file_errors_name_entry_and_field_never_the_value(
    tmp_path: Path, entries: Any, where: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(KeysFileError) as caught:
        read_specs(path)
    message = str(caught.value)
    assert where in message and "tl_short_secret" not in message and "\n" not in message
    assert caught.value.__suppress_context__  # no chained error carrying the input


def test_serve_refuses_a_bad_keys_file_in_one_line_before_starting(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"key": "tl_short_secret", "role": "admin", "districts": ["*"]}]))
    env = {
        "TUTORLEDGER_API_KEYS_FILE": str(path),
        "TUTORLEDGER_EVENT_STORE": f"sqlite:///{tmp_path}/l.db",
        "TUTORLEDGER_VAR_DIR": str(tmp_path / "var"),
    }
    result = CliRunner().invoke(cli, ["serve", "--port", "1"], env=env)
    assert result.exit_code == 2, result.output
    output = result.output.strip()
    assert output.count("\n") == 0 and "entry 1, field 'key'" in output, output
    assert "tl_short_secret" not in output and "Traceback" not in output
