"""docs/architecture.md states the import rules that `lint-imports` checks (pyproject.toml).

The contracts are the rules; the document must say exactly the same, so a contract added,
removed or changed without the document (or the other way round) fails here. `make lint`
runs import-linter itself over the installed package.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- contracts:start -->", "<!-- contracts:end -->"


def short(module: str, container: str | None = None) -> str:
    name = module.removeprefix("tutorledger.")
    return f"{container.removeprefix('tutorledger.')}.{name}" if container else name


def rule(contract: dict[str, Any]) -> str:
    """One contract as a sentence of the document's table."""
    kind = contract["type"]
    if kind == "layers":
        containers = contract.get("containers") or [None]
        layers = [
            " \\| ".join(f"`{short(m.strip(), c)}`" for m in layer.split("|"))
            for c in containers
            for layer in contract["layers"]
        ]
        return "layers, each importing only those after it: " + " → ".join(layers)
    if kind == "forbidden":
        sources = ", ".join(f"`{short(m)}`" for m in contract["source_modules"])
        banned = ", ".join(f"`{short(m)}`" for m in contract["forbidden_modules"])
        return f"{sources} never imports {banned}"
    if kind == "acyclic_siblings":
        rooms = ", ".join(f"`{short(m)}`" for m in contract["ancestors"])
        return f"no import cycle between the modules or sub-packages of a room, in {rooms}"
    raise AssertionError(f"contract type {kind!r} has no sentence in this test")


def expected_table() -> str:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["| contract | rule |", "|---|---|"]
    lines += [f"| {c['name']} | {rule(c)} |" for c in config["contracts"]]
    return "\n".join(lines)


def documented_table() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert START in text and END in text, "docs/architecture.md lost its contracts block"
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def test_the_document_states_exactly_the_checked_contracts() -> None:
    assert documented_table() == expected_table()


def test_every_top_level_package_is_under_a_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    setup = (ROOT / "setup.py").read_text()
    folders = setup.split("PACKAGE_FOLDERS = (", 1)[1].split(")", 1)[0]
    shipped = {f.strip().strip('"') for f in folders.split(",") if f.strip()}
    checked = {short(m) for m in config["root_packages"]}
    assert shipped - {"services"} <= checked
