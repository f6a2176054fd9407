"""Revocation against the installed `tutorledger serve`: a key removed from the keys file
fails within seconds over Bearer and through its dashboard cookie, without a restart; a
cookie replayed after sign-out is sent to sign in; a bad keys file keeps the keys in force
(one log line, no key), and `serve` refuses to start on one."""

from __future__ import annotations

import hashlib
import json
import os
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

GOES = "e2e-goes-" + uuid.uuid4().hex
STAYS = "e2e-stays-" + uuid.uuid4().hex
METRIC = "/v1/metrics/participation?district_id=rv-1"
BOUND = 30.0  # seconds: the file is checked once a second; the rest is a loaded machine


def spec(key: str) -> dict[str, Any]:
    return {"key_sha256": hashlib.sha256(key.encode()).hexdigest(), "role": "dashboard",
            "districts": ["rv-1"]}  # fmt: skip


def replace_file(path: Path, entries: Any) -> None:
    fresh = path.with_suffix(".new")
    fresh.write_text(json.dumps(entries))
    os.replace(fresh, path)


@dataclass
class Site:
    client: httpx.Client
    server: live.Proc
    keys: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("revocation")
    keys = tmp / "keys.json"
    replace_file(keys, [spec(GOES), spec(STAYS)])
    env = live.embedded_env(tmp, keys, TUTORLEDGER_SESSION_SECRET="e2e-revocation")
    server = live.serve(env, tmp / "serve.log", cli=installed.cli())
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            yield Site(client, server, keys)
    finally:
        server.stop()


def sign_in(site: Site, key: str) -> str:
    site.client.cookies.clear()
    response = site.client.post("/signin", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text
    site.client.cookies.clear()
    return response.cookies["tutorledger_session"]


def page(site: Site, cookie: str) -> int:
    site.client.cookies.clear()
    site.client.cookies.set("tutorledger_session", cookie)
    status = site.client.get("/dashboard/rv-1", follow_redirects=False).status_code
    site.client.cookies.clear()
    return status


def bearer(site: Site, key: str) -> int:
    return site.client.get(METRIC, headers={"Authorization": f"Bearer {key}"}).status_code


def test_a_removed_key_and_its_cookie_fail_within_seconds(site: Site) -> None:
    cookie = sign_in(site, GOES)
    assert (bearer(site, GOES), page(site, cookie)) == (200, 200)
    replace_file(site.keys, [spec(STAYS)])
    wait_until(lambda: bearer(site, GOES) == 401, "the removed key refused", timeout=BOUND)
    assert page(site, cookie) == 303
    assert bearer(site, STAYS) == 200


def test_a_cookie_replayed_after_sign_out_is_sent_to_sign_in(site: Site) -> None:
    cookie = sign_in(site, STAYS)
    assert page(site, cookie) == 200
    site.client.cookies.set("tutorledger_session", cookie)
    assert site.client.post("/signout", follow_redirects=False).status_code == 303
    assert page(site, cookie) == 303


def test_a_bad_keys_file_keeps_the_keys_and_logs_one_line(site: Site) -> None:
    short = "tl_" + uuid.uuid4().hex[:8]  # under 16 characters: refused, and never echoed
    replace_file(site.keys, [spec(STAYS), {"key": short, "role": "admin", "districts": ["*"]}])
    marker = "keys file not reloaded"

    def refused() -> bool:  # a request is what makes the server look at the file
        assert bearer(site, STAYS) == 200  # the keys in force are kept meanwhile
        return marker in site.server.log(200_000)

    wait_until(refused, "the reload refused", timeout=BOUND)
    log = site.server.log(200_000)
    lines = [line for line in log.splitlines() if marker in line]
    assert len(lines) == 1 and "entry 2, field 'key'" in lines[0], lines
    assert short not in log


def test_serve_refuses_a_bad_keys_file_in_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    short = "tl_" + uuid.uuid4().hex[:8]
    keys.write_text(json.dumps([{"key": short, "role": "admin", "districts": ["*"]}]))
    env = live.clean_env(live.embedded_env(tmp_path, keys))
    done = subprocess.run(
        [str(installed.cli()), "serve", "--port", str(live.free_port())],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    output = (done.stdout + done.stderr).strip()
    assert output.count("\n") == 0 and "entry 1, field 'key'" in output, output
    assert short not in output
