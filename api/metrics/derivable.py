"""Withheld cells that published line totals pin down together, though no line has a single
withheld cell: the last step of complementary suppression (api/metrics/suppression.py).

Each open line says "the withheld cells of this line add up to its total minus its shown
cells". In a two-way table (school × subject, school × provider) every line can hold two
withheld cells while one of them is still fixed by the equations together: two rectangles
of withheld cells joined by a single cell, say, whose value is one side's row totals minus
its column totals. A withheld cell is fixed exactly when every solution of the equations
gives it the same value: when it is a pivot of the equations' reduced row echelon form
whose row has no free column. Elimination runs modulo a 61-bit prime, per group of lines
sharing withheld cells, so the 0/1 coefficients never grow (it agrees with elimination over
the rationals unless that prime divides a minor of the 0/1 matrix; the tests check the
rule with exact fractions).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

C = TypeVar("C", bound=Hashable)
PRIME = (1 << 61) - 1


def unfix(
    lines: Sequence[Sequence[C]], hidden: set[C], avoid: set[C], rank: Callable[[C], Any]
) -> C | None:
    """A cell to withhold next because the lines fix a withheld cell: the lowest-`rank` open
    cell of a line through it (one in `avoid` only when nothing else is); None when no
    withheld cell is fixed, or no open cell is left to withhold."""
    found = fixed(lines, hidden)
    if not found:
        return None
    near = [c for line in lines if found[0] in line for c in line if c not in hidden]
    if not near:  # fixed by lines that are all withheld: open any line touching them
        near = [c for line in lines if any(h in hidden for h in line)
                for c in line if c not in hidden]  # fmt: skip
    candidates = [c for c in near if c not in avoid] or near
    return min(candidates, key=rank) if candidates else None


def fixed(lines: Sequence[Sequence[C]], hidden: set[C]) -> list[C]:
    """The withheld cells whose values the lines' totals determine (in a stable order)."""
    found: list[C] = []
    for part in _components([[c for c in line if c in hidden] for line in lines]):
        found += _fixed_in(part)
    return found


def _components(lines: list[list[C]]) -> list[list[list[C]]]:
    """The nonempty lines, grouped so that lines sharing a cell are in one group."""
    parent: dict[C, C] = {}

    def root(c: C) -> C:
        while parent.setdefault(c, c) != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for line in lines:
        for c in line[1:]:
            parent[root(c)] = root(line[0])
    groups: dict[C, list[list[C]]] = {}
    for line in lines:
        if line:
            groups.setdefault(root(line[0]), []).append(line)
    return list(groups.values())


def _fixed_in(lines: list[list[C]]) -> list[C]:
    columns = list(dict.fromkeys(c for line in lines for c in line))
    index = {c: i for i, c in enumerate(columns)}
    matrix = []
    for line in lines:
        row = [0] * len(columns)
        for c in line:
            row[index[c]] = 1
        matrix.append(row)
    pivots = _reduce(matrix, len(columns))
    free = [c for c in range(len(columns)) if c not in pivots]
    return [columns[col] for col, r in pivots.items() if all(matrix[r][f] == 0 for f in free)]


def _reduce(matrix: list[list[int]], width: int) -> dict[int, int]:
    """Reduced row echelon form in place (mod PRIME); returns {pivot column: its row}."""
    pivots: dict[int, int] = {}
    top = 0
    for col in range(width):
        found = next((r for r in range(top, len(matrix)) if matrix[r][col]), None)
        if found is None:
            continue
        matrix[top], matrix[found] = matrix[found], matrix[top]
        inverse = pow(matrix[top][col], PRIME - 2, PRIME)
        matrix[top] = [v * inverse % PRIME for v in matrix[top]]
        for r, row in enumerate(matrix):
            factor = row[col]
            if r != top and factor:
                matrix[r] = [
                    (a - factor * b) % PRIME for a, b in zip(row, matrix[top], strict=True)
                ]
        pivots[col] = top
        top += 1
    return pivots
