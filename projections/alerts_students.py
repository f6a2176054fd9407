"""Student-level early alerts (auditors and admins only; the API records each read).

The read models know a student only by a 64-bit key; an alert names the student by the
token the ledger publishes (never the id), looked up from the session that raised it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from tutorledger.domain.alert_rules import AlertRules
from tutorledger.infra.clickhouse import ProjectionStore, in_parts
from tutorledger.projections.alerts import Alert, query, window
from tutorledger.projections.dosage import US_PER_MINUTE, lengths_sql
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.steps import REQUESTED

REPEATED_SQL = """
SELECT student_key, subject, count() AS n, groupArray(session_id) AS sessions
FROM {facts} WHERE {where}
GROUP BY student_key, subject
HAVING n >= %(at_least)s
"""

# Nearest rank over the lengths (see wait_times.LEVELS for why the level is nudged down).
PERCENTILE_SQL = "SELECT quantileExact({level})(length_us), count() FROM ({lengths})"

LONG_SQL = """
SELECT session_id, school, subj, length_us FROM ({lengths}) WHERE length_us > %(threshold)s
"""

TOKENS_SQL = """
SELECT session_id, any(student_id) FROM ledger_events
WHERE district_id = %(district_id)s AND type = 'session.requested'
    AND session_id IN %(sessions)s
GROUP BY session_id
"""


def tokens(store: ProjectionStore, district_id: str, sessions: list[str]) -> dict[str, str]:
    """Session id → its student's token (as the ledger publishes it)."""
    rows = [
        row
        for part in in_parts(sessions)
        for row in store.execute(TOKENS_SQL, {"district_id": district_id, "sessions": tuple(part)})
    ]
    return {str(s): str(t) for s, t in rows}


def repeated_subject(
    store: ProjectionStore, base: Filters, at: date, rules: AlertRules
) -> list[Alert]:
    """One student asking for help in one subject `repeated_subject_requests`+ times."""
    f, span = window(base, at, rules.repeated_subject_days)
    sql = REPEATED_SQL.format(facts=f.tables(store).facts, where=facts_where(f, (REQUESTED,)))
    params = {**f.params(), "at_least": rules.repeated_subject_requests}
    found = [(str(subject), int(n), sorted(map(str, ids))) for _, subject, n, ids in
             store.execute(sql, params)]  # fmt: skip
    token_of = tokens(store, f.district_id, [ids[0] for _, _, ids in found])
    alerts = []
    for subject, n, ids in found:
        scope = {"student_token": token_of.get(ids[0], ""), "subject": subject}
        figures: dict[str, Any] = {"requests": n, "session_ids": ids}
        evidence = [("sessions", {"session_id": sid}) for sid in ids]
        alerts.append(Alert("repeated_subject", scope, span, figures, evidence))
    return sorted(alerts, key=lambda a: (a.scope["student_token"], a.scope["subject"]))


def length_percentile_us(
    store: ProjectionStore, f: Filters, percent: int
) -> tuple[int | None, int]:
    """The nearest-rank `percent` session length (µs) of the filters, and how many."""
    level = f"{percent / 100 - 1e-11:.11f}"
    sql = PERCENTILE_SQL.format(level=level, lengths=lengths_sql(store, f))
    value, n = store.execute(sql, f.params())[0]
    return (int(value), int(n)) if int(n) else (None, 0)


def long_session(store: ProjectionStore, base: Filters, at: date, rules: AlertRules) -> list[Alert]:
    """Sessions requested in the last `long_session_days` longer than the district's
    `long_session_percentile` length over the last `long_session_baseline_days`."""
    baseline, _ = window(base, at, rules.long_session_baseline_days)
    threshold, n = length_percentile_us(store, baseline, rules.long_session_percentile)
    if threshold is None:
        return []
    f, span = window(base, at, rules.long_session_days)
    sql = LONG_SQL.format(lengths=lengths_sql(store, f))
    rows = store.execute(sql, {**f.params(), "threshold": threshold})
    token_of = tokens(store, f.district_id, [str(r[0]) for r in rows])
    alerts = []
    for sid, school, subject, length in sorted(rows):
        scope = {"student_token": token_of.get(str(sid), ""), "session_id": str(sid),
                 "school_id": str(school), "subject": str(subject)}  # fmt: skip
        figures: dict[str, Any] = {
            "length_minutes": int(length) / US_PER_MINUTE,
            "district_percentile_minutes": threshold / US_PER_MINUTE,
            "percentile": rules.long_session_percentile,
            "baseline_sessions": n,
        }
        evidence = [("dosage", query(baseline)), ("sessions", {"session_id": str(sid)})]
        alerts.append(Alert("long_session", scope, span, figures, evidence))
    return alerts


STUDENT_KINDS = (repeated_subject, long_session)


def student_alerts(
    store: ProjectionStore, base: Filters, at: date, rules: AlertRules
) -> list[Alert]:
    return [alert for kind in STUDENT_KINDS for alert in kind(store, base, at, rules)]
