"""The project explains itself: its contract page lists exactly the routes the app serves,
and no file cites documents that are not in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tutorledger.api.app import create_app
from tutorledger.infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"
ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s*]*)`")


def documented_routes() -> set[tuple[str, str]]:
    return {(m[1], m[2]) for m in ROUTE.finditer(CONTRACT.read_text())}


def served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(Settings(var_dir=tmp_path))
    return {
        (method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item
    }


def test_contract_lists_exactly_the_served_routes(tmp_path: Path) -> None:
    documented, served = documented_routes(), served_routes(tmp_path)
    assert sorted(served - documented) == [], "served but not in docs/contract.md"
    assert sorted(documented - served) == [], "in docs/contract.md but not served"


def test_no_citation_of_documents_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"CONTRACT §|CONTRACT\.md|DESIGN\.md|STYLE\.md")
    citing = [
        name
        for name in tracked
        if name.endswith((".py", ".md", ".yml", ".toml", "Makefile", "Dockerfile"))
        and name != "tests/unit/test_docs.py"
        and outside.search((ROOT / name).read_text(errors="replace"))
    ]
    assert citing == []
