"""The package as users install it: built into artefacts, installed outside the checkout.

End-to-end tests run the ``tutorledger`` script of a fresh virtual environment into which
the *wheel* built from this checkout was installed by ``infra/docker/install-wheel.sh``
(the Dockerfile's install step), never the editable tree the unit tests import. A second
environment holds a plain, non-editable ``pip install`` of a fresh ``git clone``.
Both live in temporary directories outside the checkout, built once per test session.
``TUTORLEDGER_CLI=/path/to/tutorledger`` skips the build for a quick local run; CI never
sets it.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
INSTALL_WHEEL = REPO / "infra" / "docker" / "install-wheel.sh"


@dataclass(frozen=True)
class Install:
    """One fresh virtual environment holding an installed tutorledger."""

    root: Path

    @property
    def cli(self) -> Path:
        return self.root / "venv" / "bin" / "tutorledger"

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @property
    def dist(self) -> Path:
        return self.root / "dist"


def _scratch(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, root, True)
    return root


def _run(
    args: list[str | Path], env: dict[str, str] | None = None, cwd: Path | None = None
) -> None:
    result = subprocess.run(
        [str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def _fresh_venv(root: Path) -> Install:
    venv.create(root / "venv", with_pip=True)
    return Install(root)


@functools.cache
def from_wheel() -> Install:
    """sdist → wheel → fresh venv, by the same script the Docker image runs."""
    install = _fresh_venv(_scratch("tutorledger-wheel-"))
    env = {**os.environ, "BUILD_PYTHON": sys.executable}
    _run([INSTALL_WHEEL, REPO, install.dist, install.python], env=env, cwd=install.root)
    return install


@functools.cache
def from_clone() -> Install:
    """``git clone`` of this repository's HEAD, then a plain (non-editable) ``pip install``."""
    root = _scratch("tutorledger-clone-")
    _run(["git", "clone", "--quiet", "--no-hardlinks", REPO, root / "src"])
    install = _fresh_venv(root)
    _run([install.python, "-m", "pip", "install", "--disable-pip-version-check", root / "src"])
    return install


def cli() -> Path:
    """The ``tutorledger`` script the end-to-end tests drive."""
    override = os.environ.get("TUTORLEDGER_CLI")
    return Path(override) if override else from_wheel().cli


def cli_env() -> dict[str, str]:
    """The caller's environment without TUTORLEDGER_ settings; quiet, wide, uncoloured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTORLEDGER_")}
    env.update(TUTORLEDGER_LOG_LEVEL="WARNING", COLUMNS="160", NO_COLOR="1")
    return env


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """One `tutorledger` command as an operator runs it; the caller checks the exit code."""
    return subprocess.run([str(cli()), *map(str, args)], env=cli_env(),
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip


def kill_cli_midway(args: Sequence[str | Path], started: Callable[[], bool], what: str) -> None:
    """Start one `tutorledger` command, wait until `started()` says it has done some work,
    then SIGKILL it: the crash a power cut gives, for the resume tests."""
    process = subprocess.Popen([str(cli()), *map(str, args)], env=cli_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: started() or process.poll() is not None, what)
        assert process.poll() is None, f"the command ended before {what}: nothing to kill"
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
