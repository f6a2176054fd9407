"""The operator commands beside a running embedded server (installed package, real processes).

`tutorledger serve` on chdb holds the projections' data dir (one process may open it). The
commands that read the projections then refuse with one line naming what to run instead,
never a traceback; `backup` works beside it (SQLite's online backup); once the server is
stopped the same commands run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import installed
from builders import write_keys
from served import kill, server_env, start_server, stop
from waiting import wait_until

ADMIN_KEY = "e2e-beside-admin-key-0000000000"
DISTRICT = "demo-district"


def run(tmp: Path, keys: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = server_env(tmp, keys) | {"TUTORLEDGER_LOG_LEVEL": "WARNING"}
    return subprocess.run([str(installed.cli()), *args], env=env, cwd=tmp, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip


def projected(base_url: str) -> bool:
    """The server's projector has caught up with the ledger (readiness: no projection lag)."""
    r = httpx.get(f"{base_url}/readyz", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    return r.status_code == 200 and r.json()["checks"].get("projection_lag") == 0


def test_projection_commands_beside_a_running_server(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "api-keys.json",
                      [{"key": ADMIN_KEY, "role": "admin", "districts": ["*"]}])  # fmt: skip
    filled = run(tmp_path, keys, "demo", "--students", "60", "--schools", "2", "--days", "5")
    assert filled.returncode == 0, filled.stderr
    server = start_server(tmp_path, keys, "beside")
    try:
        wait_until(lambda: projected(server.base_url), "the server to project the demo ledger")
        for command in (
            ["replay", "--as-of-position", "5"],
            ["reconcile"],
            ["repair", "--dry-run"],
            ["rebuild"],
        ):
            result = run(tmp_path, keys, *command)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert result.returncode == 2, (command, result.stdout, result.stderr)
            assert len(lines) == 1, (command, result.stderr)
            assert lines[0].startswith("projections_in_use: "), lines
            assert "tutorledger serve" in lines[0] and "Traceback" not in result.stderr
        made = run(tmp_path, keys, "backup", str(tmp_path / "backup"))
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["events"] > 0
    finally:
        if stop(server) != 0:
            kill(server)
    checked = run(tmp_path, keys, "reconcile")
    assert checked.returncode == 0 and checked.stdout.startswith("OK"), checked.stderr
