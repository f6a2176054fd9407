"""Release integrity: what users install works, and holds every file of the source tree.

Checked on artefacts, not on the working tree: the sdist and the wheel built from it (the
Docker image's install step) and a plain ``pip install`` of a fresh ``git clone``, each in
a fresh virtual environment outside the checkout, driven as a user would: ``--help``,
``demo``, ``serve`` with a figure and a history read over HTTP, ``verify``, ``rebuild``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import installed
import pytest
from builders import write_keys
from served import kill, start_server

pytestmark = pytest.mark.e2e

ADMIN = "release-admin-key-00000000000"
DISTRICT = "demo-district"
SKIPPED_PARTS = {"__pycache__"}


def package_folders() -> list[str]:
    """Top-level folders that are Python packages, found independently of setup.py."""
    return sorted(p.parent.name for p in installed.REPO.glob("*/__init__.py"))


def source_files() -> set[str]:
    """Every file under the package folders, as its path inside the installed package."""
    found: set[str] = set()
    for folder in package_folders():
        for path in (installed.REPO / folder).rglob("*"):
            relative = path.relative_to(installed.REPO)
            if path.is_file() and not SKIPPED_PARTS & set(relative.parts):
                found.add(f"tutorledger/{relative.as_posix()}")
    return found


def test_package_folders_are_the_architecture() -> None:
    assert package_folders() == [
        "api", "bench", "consumers", "domain", "infra", "projections",
    ]  # fmt: skip


def test_wheel_and_sdist_hold_every_source_and_data_file() -> None:
    dist = installed.from_wheel().dist
    (wheel,) = dist.glob("tutorledger-*.whl")
    (sdist,) = dist.glob("tutorledger-*.tar.gz")
    expected = source_files()
    assert any(f.endswith(".sql") for f in expected)  # data files are part of the check
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    in_wheel = {n for n in names if n.startswith("tutorledger/")}
    missing = sorted(expected - in_wheel)
    assert not missing, f"{len(missing)} files missing from the wheel: {missing[:20]}"
    # The local test servers stay in the checkout: nothing of devtools/ is installed.
    assert (installed.REPO / "devtools" / "services" / "__init__.py").is_file()
    assert not [n for n in names if "services/" in n or n.startswith("devtools")]
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        in_sdist = {f"tutorledger/{n.split('/', 1)[1]}" for n in archive.getnames() if "/" in n}
    missing = sorted(expected - in_sdist)
    assert not missing, f"{len(missing)} files missing from the sdist {root}: {missing[:20]}"


@pytest.fixture(params=["wheel", "clone"])
def install(request: pytest.FixtureRequest) -> installed.Install:
    return installed.from_wheel() if request.param == "wheel" else installed.from_clone()


def user_env(tmp: Path, keys: Path) -> dict[str, str]:
    """A user's shell: no TUTORLEDGER_* from ours, no checkout on the path, files in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTORLEDGER_")}
    env.pop("PYTHONPATH", None)
    return env | {
        "TUTORLEDGER_EVENT_STORE": f"sqlite:///{tmp}/ledger.db",
        "TUTORLEDGER_CLICKHOUSE": f"chdb://{tmp}/projections",
        "TUTORLEDGER_API_KEYS_FILE": str(keys),
        "TUTORLEDGER_VAR_DIR": str(tmp / "var"),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }


def run(install: installed.Install, env: dict[str, str], cwd: Path, *args: str) -> str:
    result = subprocess.run(
        [str(install.cli), *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"tutorledger {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result.stdout


def test_installed_package_is_not_the_checkout(install: installed.Install, tmp_path: Path) -> None:
    code = "import tutorledger.api.http.routes as r; print(r.__file__)"
    where = subprocess.run(
        [str(install.python), "-c", code], cwd=tmp_path, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    assert str(install.root) in where and str(installed.REPO) not in where, where


@pytest.fixture
def user(install: installed.Install, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    keys = write_keys(tmp_path / "keys.json", [{"key": ADMIN, "role": "admin", "districts": ["*"]}])
    yield user_env(tmp_path, keys), tmp_path


def test_installed_commands_work(
    install: installed.Install, user: tuple[dict[str, str], Path]
) -> None:
    env, tmp = user
    for args in ((), ("relay",), ("project",), ("serve",), ("verify",), ("rebuild",)):
        assert "Usage" in run(install, env, tmp, *args, "--help")
    loaded = json.loads(run(install, env, tmp, "demo", "--students", "120", "--days", "5"))
    assert loaded["accepted"] > 0 and loaded["rejected"] == 0
    served = served_figures(install, env, tmp)
    assert served["sessions_requested"] > 0
    verified = json.loads(run(install, env, tmp, "verify"))
    assert verified["ok"] is True and verified["checked"] >= loaded["accepted"]
    run(install, env, tmp, "rebuild")


def test_bench_from_a_plain_install_says_in_one_line_what_it_needs(
    install: installed.Install, user: tuple[dict[str, str], Path]
) -> None:
    """No `bench` extra, no checkout: one line naming the extra (or, with the extra present,
    the checkout the local servers need), exit 2, no traceback."""
    env, tmp = user
    probe = "import importlib.util as u; print(u.find_spec('httpx') is not None)"
    has_httpx = subprocess.run([str(install.python), "-c", probe], cwd=tmp, capture_output=True,
                               text=True, check=True).stdout.strip() == "True"  # fmt: skip
    result = subprocess.run(
        [str(install.cli), "bench", "--with-local-services"], env=env, cwd=tmp,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("bench_unavailable: "), result.stderr
    wanted = "needs a source checkout" if has_httpx else "pip install 'tutorledger[bench]'"
    assert wanted in lines[0], lines[0]


def served_figures(install: installed.Install, env: dict[str, str], tmp: Path) -> dict[str, int]:
    """``serve`` from the install: post one session, read its history and a figure."""
    server = start_server(tmp, Path(env["TUTORLEDGER_API_KEYS_FILE"]), "release", install.cli)
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            http.headers["Authorization"] = f"Bearer {ADMIN}"
            http.headers["X-Purpose"] = "release check"  # the history carries student data
            posted = http.post("/v1/events", json=requested_event())
            assert posted.json()["results"][0]["status"] == "accepted", posted.text
            history = http.get(f"/v1/sessions/{DISTRICT}/release-session/events")
            assert history.status_code == 200, history.text
            assert [e["event"]["type"] for e in history.json()["events"]] == ["session.requested"]
            figures = http.get("/v1/metrics/participation", params={"district_id": DISTRICT})
            assert figures.status_code == 200, figures.text
            return dict(figures.json())
    finally:
        kill(server)


def requested_event() -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "session.requested",
        "schema_version": 1,
        "district_id": DISTRICT,
        "session_id": "release-session",
        "occurred_at": "2026-01-05T16:00:00-05:00",
        "payload": {"school_id": "school-1", "student_id": "s-1", "grade": 7, "subject": "math"},
    }
