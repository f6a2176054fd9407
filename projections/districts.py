"""Which districts the projections hold: the picker for all-district keys and replay."""

from __future__ import annotations

from tutorledger.infra.clickhouse import ProjectionStore

DISTRICTS_SQL = """
SELECT DISTINCT district_id FROM ledger_events WHERE position <= %(p)s ORDER BY district_id
"""


def known_districts(store: ProjectionStore, as_of_position: int = 2**62) -> list[str]:
    """Districts with at least one projected event at or below the position, by id."""
    return [str(r[0]) for r in store.execute(DISTRICTS_SQL, {"p": as_of_position})]
