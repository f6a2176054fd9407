"""The OpenAPI is the truth: schemathesis, every check and every phase (stateful included),
against a live `tutorledger serve`; zero failures allowed.

Bounded for CI (`TUTORLEDGER_FUZZ_EXAMPLES`, default 25 per operation); raise it for a longer
run. The case count is printed so a run can be quoted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import installed
import live
import pytest
from builders import at_minute, write_keys

pytestmark = pytest.mark.e2e

ADMIN_KEY = "fuzz-admin-key-00000000000"
EXAMPLES = int(os.environ.get("TUTORLEDGER_FUZZ_EXAMPLES", "25"))
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def seed(base_url: str) -> None:
    """A few sessions and a school, so stateful links have something to follow."""
    events = []
    for i in range(3):
        session = f"s-{i}"
        events.append(at_minute("d1", session, "requested", 1, school_id="sch-1",
                                student_id=f"st-{i}", grade=5, subject="math"))  # fmt: skip
        events.append(at_minute("d1", session, "matched", 5, tutor_id="t-1"))
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    response = httpx.post(f"{base_url}/v1/events", json={"events": events}, headers=headers)
    assert response.status_code == 200, response.text
    school = {"name": "School One", "enrollment": {"5": 100}, "as_of": "2026-01-05"}
    response = httpx.put(f"{base_url}/v1/schools/d1/sch-1", json=school, headers=headers)
    assert response.status_code == 200, response.text


def test_schemathesis_all_checks_all_phases(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.json", [{"key": ADMIN_KEY, "role": "admin",
                                                 "districts": ["*"]}])  # fmt: skip
    server = live.serve(
        live.embedded_env(tmp_path, keys), tmp_path / "serve.log", cli=installed.cli()
    )
    try:
        seed(server.base_url)
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.base_url}/openapi.json",
            "--header", f"Authorization: Bearer {ADMIN_KEY}",
            "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(EXAMPLES),
            "--seed", os.environ.get("TUTORLEDGER_FUZZ_SEED", "20261123"),
            "--request-timeout", "60",
            "--suppress-health-check", "too_slow",
            "--no-color",
        ]  # fmt: skip
        path = os.pathsep.join([str(HOOKS.parent), str(HOOKS.parent.parent)])  # + rosters.py
        env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS.stem, "PYTHONPATH": path}
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=1500, env=env, cwd=tmp_path
        )
    finally:
        server.stop()
    output = done.stdout + done.stderr
    cases = re.search(r"(\d+) generated", output)
    print(f"schemathesis: {cases.group(1) if cases else '?'} cases generated")  # noqa: T201
    assert done.returncode == 0, output[-12000:] + "\n--- server log ---\n" + server.log()
    assert cases and int(cases.group(1)) > 0, output[-3000:]
