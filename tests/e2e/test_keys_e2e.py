"""`tutorledger keys` against the installed package and a running `tutorledger serve`: a key
added works without a restart and shows its last use, a revoked key gets 401 (both waited
on as conditions), the keys file never holds a key, and `serve` refuses a keys file with an
unknown field in one line naming the entry and the field."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import installed
import live
import pytest
from waiting import wait_until

pytestmark = pytest.mark.e2e

METRIC = "/v1/metrics/participation?district_id=ky-1"
BOUND = 60.0  # seconds: the file is checked once a second; the rest is a loaded machine


@dataclass
class Site:
    client: httpx.Client
    server: live.Proc
    env: dict[str, str]
    keys: Path


def keys_cli(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """One `tutorledger keys …` as an operator runs it, beside the running server."""
    env = live.clean_env({**site.env, "TUTORLEDGER_LOG_LEVEL": "WARNING"})
    return subprocess.run([str(installed.cli()), "keys", *args], env=env, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip


def listed(site: Site) -> list[dict[str, Any]]:
    done = keys_cli(site, "list", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("keys")
    keys = tmp / "keys.json"
    keys.write_text("[]\n")  # a server with no key at all yet: every one comes from `keys add`
    env = live.embedded_env(tmp, keys)
    server = live.serve(env, tmp / "serve.log", cli=installed.cli())
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            yield Site(client, server, env, keys)
    finally:
        server.stop()


def bearer(site: Site, key: str) -> int:
    return site.client.get(METRIC, headers={"Authorization": f"Bearer {key}"}).status_code


def test_an_added_key_works_without_restart_then_revoked_gets_401(site: Site) -> None:
    added = keys_cli(site, "add", "--role", "dashboard", "--districts", "ky-1",
                     "--provider", "acme-tutoring", "--expires", "2099-01-31")  # fmt: skip
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("tl_") and "\n" not in key  # stdout holds the key and nothing else
    assert key not in site.keys.read_text()  # only its SHA-256 is stored
    assert key not in site.server.log(1_000_000)
    wait_until(lambda: bearer(site, key) == 200, "the added key accepted", timeout=BOUND)

    (row,) = listed(site)
    assert (row["role"], row["districts"], row["provider"], row["status"]) == (
        "dashboard", ["ky-1"], "acme-tutoring", "active")  # fmt: skip
    assert row["expires_at"] == "2099-02-01T00:00:00Z"  # works through the day given (UTC)
    used = wait_until(lambda: listed(site)[0]["last_used"], "its last use listed", timeout=BOUND)
    assert used.endswith("Z")

    revoked = keys_cli(site, "revoke", row["id"])
    assert revoked.returncode == 0, revoked.stderr
    wait_until(lambda: bearer(site, key) == 401, "the revoked key refused", timeout=BOUND)
    assert listed(site)[0]["status"] == "revoked"
    assert key not in site.keys.read_text()


def test_revoking_an_unknown_id_changes_nothing(site: Site) -> None:
    before = site.keys.read_bytes()
    done = keys_cli(site, "revoke", "0123456789abcdef")
    assert done.returncode == 1 and "key_not_found" in done.stderr
    assert site.keys.read_bytes() == before


def test_serve_refuses_an_unknown_field_in_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    pasted = "tl_" + uuid.uuid4().hex  # a key pasted where a field name goes
    keys.write_text(json.dumps([{"key_sha256": "0" * 64, "role": "admin", "districts": ["*"]},
                                {"key_sha256": "1" * 64, "role": "admin", "districts": ["*"],
                                 pasted: True}]))  # fmt: skip
    env = live.clean_env(live.embedded_env(tmp_path, keys))
    done = subprocess.run(
        [str(installed.cli()), "serve", "--port", str(live.free_port())],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0 and output.count("\n") == 0, output
    assert "entry 2, an unknown field" in output and "Traceback" not in output
    assert pasted not in output
