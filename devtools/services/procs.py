"""Process plumbing for the real test servers: free ports, child processes, readiness waits.

Kept apart from ``servers`` so the server-specific code there stays short. Every process
is stopped by the pid of the ``Popen`` we created, never by name, so servers started by
someone else on the same machine are never touched.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tutorledger.bench.common import free_port

__all__ = ["ServerProcess", "ServiceError", "free_port", "free_ports", "run", "spawn", "wait_ready"]
log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A real server could not be installed, started or reached."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (sockets held open together so none repeats)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def run(
    cmd: Sequence[str],
    *,
    timeout: float = 600.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a short command and return its stdout; raise ``ServiceError`` with its output."""
    log.debug("running %s", " ".join(cmd))
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"{cmd[0]}: {exc}") from exc
    if check and done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise ServiceError(f"{' '.join(cmd)} exited {done.returncode}: {output}")
    return done.stdout


@dataclass
class ServerProcess:
    """A server child process we started, with its output captured to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's output, for error messages when it fails to start."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM our own pid, then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self._stopped:
            return
        self._stopped = True
        if not self.alive():
            return
        log.info("stopping %s (pid %d)", self.name, self.pid)
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored SIGTERM; killing", self.name, self.pid)
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(5.0)


def spawn(name: str, cmd: Sequence[str], log_path: Path, cwd: Path | None = None) -> ServerProcess:
    """Start ``cmd`` in its own session so a Ctrl-C to pytest does not hit it first."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        try:
            popen = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot start {name}: {exc}") from exc
    log.info("started %s (pid %d): %s", name, popen.pid, " ".join(cmd))
    return ServerProcess(name, popen, log_path)


def wait_ready(proc: ServerProcess, probe: Callable[[], object], timeout: float) -> float:
    """Poll ``probe`` until it stops raising; return seconds waited.

    On failure the process is stopped and the error carries its last output, because a
    server that never got ready is useless and its log is the only clue why.
    """
    start = time.monotonic()
    last: BaseException | None = None
    while time.monotonic() - start < timeout:
        if not proc.alive():
            raise ServiceError(
                f"{proc.name} exited with {proc.popen.returncode}: {proc.log_tail()}"
            )
        try:
            probe()
        except Exception as exc:  # any failure just means "not ready yet"
            last = exc
            time.sleep(0.1)
            continue
        waited = time.monotonic() - start
        log.info("%s ready after %.2fs", proc.name, waited)
        return waited
    proc.stop()
    raise ServiceError(
        f"{proc.name} not ready after {timeout:.0f}s (last error: {last!r}): {proc.log_tail()}"
    )
