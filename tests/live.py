"""Real `tutorledger` processes for the tests that need a live server (fuzzing, faults, load).

Each process is started from the console script beside the running interpreter, its output
kept in a log file, and stopped (or killed) by its own pid. Imported by plain name, like
`builders`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

CLI = Path(sys.executable).with_name("tutorledger")
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(values: Mapping[str, str]) -> dict[str, str]:
    """This environment without any TUTORLEDGER_* variable, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTORLEDGER_")}
    env.update(values)
    env.setdefault("NO_COLOR", "1")
    env.setdefault("COLUMNS", "200")
    return env


@dataclass
class Proc:
    """One `tutorledger` subcommand we started."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL: no clean-up handlers, no flush, the crash a power cut gives."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


def spawn(
    name: str,
    args: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path | None = None,
    cli: Path | None = None,
) -> Proc:
    """`tutorledger ARGS` (this venv's script unless `cli` names an installed one)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(cli or CLI), *args],
            cwd=cwd or log_path.parent,
            env=clean_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Proc(name, process, log_path)


def serve(
    env: Mapping[str, str],
    log_path: Path,
    *,
    port: int | None = None,
    workers: int = 1,
    timeout: float = START_TIMEOUT,
    cli: Path | None = None,
) -> Proc:
    """`tutorledger serve` on a free loopback port, returned once /healthz answers."""
    port = port or free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    proc = spawn("api", args, env, log_path, cli=cli)
    proc.base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, timeout)
    except BaseException:
        proc.kill()
        raise
    return proc


def wait_healthy(proc: Proc, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited {proc.process.returncode}:\n{proc.log()}")
        try:
            if httpx.get(f"{proc.base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{proc.name} not healthy in {timeout:.0f}s:\n{proc.log()}")
        time.sleep(0.2)


def embedded_env(tmp: Path, keys_file: Path, **extra: str) -> dict[str, str]:
    """Embedded mode on files under `tmp`: SQLite ledger, chdb projections."""
    return {
        "TUTORLEDGER_EVENT_STORE": f"sqlite:///{tmp}/ledger.db",
        "TUTORLEDGER_CLICKHOUSE": f"chdb://{tmp}/projections",
        "TUTORLEDGER_API_KEYS_FILE": str(keys_file),
        "TUTORLEDGER_VAR_DIR": str(tmp / "var"),
        **extra,
    }
