"""GET /v1/alerts: early alerts for district staff; GET /v1/alerts/students for auditors.

Both are recomputed from the read models at a ledger position over windows ending at `at`,
so a list read today can be reproduced exactly later from its `at` and `as_of_position`.
The student list names students by token and is a personal-data read: it needs `X-Purpose`
and is recorded in the disclosure log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query

from tutorledger.api.http import alert_schemas as schemas
from tutorledger.api.http.bounds import BoundedDate
from tutorledger.api.http.deps import AuditorIn, DashboardIn, RuntimeDep
from tutorledger.api.http.disclose import PurposeHeader, disclose, require_purpose
from tutorledger.api.http.routes.metrics import AsOfQ, resolve_filters
from tutorledger.api.metrics.suppression import EXACT_ROLES
from tutorledger.api.runtime import Runtime
from tutorledger.domain.alert_rules import AlertRules
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.alerts import Alert, latest_local_date, school_alerts
from tutorledger.projections.alerts_students import student_alerts
from tutorledger.projections.filters import Filters

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
AtQ = Annotated[
    BoundedDate | None,
    Query(description="Windows end on this local date (default: the latest request's)"),
]
Compute = Callable[[ProjectionStore, Filters, date, AlertRules], list[Alert]]
# Per kind: each count figure and the figures derived from it (withheld with it when small).
COUNTS: dict[str, dict[str, tuple[str, ...]]] = {
    "subject_hotspot": {"requests": ("share", "lift"), "students": ()},
    "long_waits": {"matched": ("school_p90", "ratio")},
    "falling_use": {"active_before": ("drop",), "active_after": ("drop",)},
    "equity_gap": {
        "count": ("rate", "difference", "ci_low", "ci_high"),
        "rest_count": ("rest_rate", "difference", "ci_low", "ci_high"),
    },
}
RULES = """

Thresholds are per district (`alerts` in the districts file; defaults in brackets). Windows
are local dates ending at `at` inclusive (default: the local date of the district's latest
session event at the position). `evidence` lists API paths pinned to the same
`as_of_position` that show the figures."""
SCHOOL_DOC = (
    "Kinds: `subject_hotspot` — a school × subject whose demand `lift` ≥ `hotspot_lift` [2] "
    "with ≥ `hotspot_requests` [20] requests in the last `hotspot_days` [28]; `long_waits` — "
    "a school whose nearest-rank p90 wait over the last `long_wait_days` [7] is more than "
    "`long_wait_ratio` [2] × the district's; `falling_use` — a school whose weekly active "
    "students in the last complete ISO week on or before `at` are down by ≥ "
    "`falling_use_drop` [0.3] from the week `falling_use_weeks` [3] earlier, which had ≥ "
    "`falling_use_students` [10]; `equity_gap` — a roster group whose reach or regular use "
    "over the last `equity_gap_days` [28] is below the rest of the district's by more than "
    "`equity_gap_margin` [0.05], the whole 95 % interval below zero, with ≥ "
    "`equity_gap_students` [20] students in the group and in the rest; `tutor_overlap` — a "
    "provider's tutor with ≥ `tutor_overlap_sessions` [3] completed sessions overlapping "
    "another of theirs (matched → completed), making ≥ `tutor_overlap_share` [0.1] of their "
    "sessions requested in the last `tutor_overlap_days` [28] (evidence: the auditors' "
    "tutor-overlap audit). Dashboard keys get small counts withheld like the metrics." + RULES
)
STUDENT_DOC = (
    "Auditors and admins. Kinds: `repeated_subject` — one student with ≥ "
    "`repeated_subject_requests` [5] requests in one subject in the last "
    "`repeated_subject_days` [14]; `long_session` — a session requested in the last "
    "`long_session_days` [7] longer than the district's nearest-rank "
    "`long_session_percentile` [99] session length over the last "
    "`long_session_baseline_days` [28]. Students appear by token only. Needs `X-Purpose`; "
    "each read is recorded in the disclosure log." + RULES
)


def _path(district_id: str, name: str, params: dict[str, Any]) -> str:
    if name == "sessions":
        return f"/v1/sessions/{quote(district_id)}/{quote(params['session_id'])}"
    if name == "tutor-overlap":
        return f"/v1/audit/tutor-overlap?{urlencode(params)}"
    return f"/v1/metrics/{name}?{urlencode(params)}"


def _out(alert: Alert, district_id: str) -> dict[str, Any]:
    return {
        "kind": alert.kind,
        "scope": alert.scope,
        "window_from": alert.window[0],
        "window_to": alert.window[1],
        "figures": dict(alert.figures),
        "evidence": [_path(district_id, name, p) for name, p in alert.evidence],
    }


def _protect(alert: dict[str, Any], threshold: int) -> None:
    """Withhold small counts (and what derives from them), as the metrics do for dashboards."""
    figures = alert["figures"]
    for count, derived in COUNTS.get(alert["kind"], {}).items():
        value = figures.get(count)
        if isinstance(value, int) and 0 < value < threshold:
            for name in (count, *derived):
                figures[name] = None
            alert["suppressed"] = True


def alert_list(
    store: ProjectionStore,
    filters: Filters,
    head: str | None,
    rules: AlertRules,
    at: date | None,
    compute: Compute,
) -> tuple[schemas.AlertList, list[Alert]]:
    """The alerts `compute` finds at the filters' position, windows ending at `at` (default:
    the local date of the district's latest request then). Filters other than the
    district and position are ignored: alerts are district-wide."""
    base = Filters(filters.district_id, filters.as_of_position, filters.tz,
                   generation=filters.generation, epochs=filters.epochs)  # fmt: skip
    day = at or latest_local_date(store, base)
    found = compute(store, base, day, rules) if day else []
    body = schemas.AlertList(
        district_id=base.district_id,
        at=day,
        as_of_position=base.as_of_position,
        head_hash=head,
        time_zone=base.tz,
        rules=rules,
        alerts=[schemas.AlertOut.model_validate(_out(a, base.district_id)) for a in found],
    )
    return body, found


def protect(body: schemas.AlertList, role: str, threshold: int) -> schemas.AlertList:
    """The school alerts as `role` may see them: exact for auditors and admins."""
    if role in EXACT_ROLES:
        return body
    data = body.model_dump(mode="python")
    for alert in data["alerts"]:
        _protect(alert, threshold)
    data["suppressed"] = any(a.get("suppressed") for a in data["alerts"])
    return schemas.AlertList.model_validate(data)


def _resolve(
    runtime: Runtime, district_id: str, at: date | None, as_of: int | None, compute: Compute
) -> tuple[schemas.AlertList, list[Alert]]:
    filters, head, _ = resolve_filters(runtime, district_id, None, None, None, None, None, as_of)
    rules = runtime.settings.district(district_id).alerts
    return alert_list(runtime.projections, filters, head, rules, at, compute)


@router.get("", response_model=schemas.AlertList, description=SCHOOL_DOC)
def get_alerts(
    runtime: RuntimeDep,
    caller: DashboardIn,
    at: AtQ = None,
    as_of_position: AsOfQ = None,
) -> schemas.AlertList:
    principal, district_id = caller.principal, caller.district_id
    body, _ = _resolve(runtime, district_id, at, as_of_position, school_alerts)
    threshold = runtime.settings.district(district_id).suppression_threshold
    return protect(body, principal.role, threshold)


@router.get("/students", response_model=schemas.AlertList, description=STUDENT_DOC)
def get_student_alerts(
    runtime: RuntimeDep,
    caller: AuditorIn,
    at: AtQ = None,
    as_of_position: AsOfQ = None,
    x_purpose: PurposeHeader = None,
) -> schemas.AlertList:
    principal, district_id = caller.principal, caller.district_id
    purpose = require_purpose(x_purpose)
    body, found = _resolve(runtime, district_id, at, as_of_position, student_alerts)
    students = {a.scope["student_token"] for a in found}
    resource = f"at={body.at} as_of_position={body.as_of_position}"
    disclose(
        runtime, principal, purpose, district_id, students, "GET /v1/alerts/students", resource
    )
    return body
