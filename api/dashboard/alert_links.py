"""The alerts panel: each alert's evidence as a dashboard view (the browser holds a session
cookie, not an API key), pinned to the same position and window as the alert."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from tutorledger.api.http.alert_schemas import AlertList
from tutorledger.api.http.routes.alerts import alert_list, protect
from tutorledger.api.metrics.scope import Scope
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.alerts import school_alerts

# Metric of an evidence query → (dashboard page under /dashboard/{district}, section anchor).
PAGES = {
    "demand": ("/drill", ""),
    "wait-times": ("", "#waits"),
    "engagement": ("", "#engagement"),
    "dosage": ("", "#dosage"),
    "equity-gaps": ("/groups", ""),
}
KEPT = ("school_id", "subject", "from", "to", "as_of_position")


@dataclass(frozen=True)
class Link:
    href: str
    api: str  # the API query the dashboard view answers


def dashboard_links(district_id: str, evidence: list[str]) -> list[Link]:
    """Dashboard views showing the same figures as the alert's evidence queries."""
    links = []
    for api in evidence:
        parts = urlsplit(api)
        page = PAGES.get(parts.path.rsplit("/", 1)[-1])
        if page is None:
            continue
        found = parse_qs(parts.query)
        query = urlencode({k: found[k][0] for k in KEPT if k in found})
        links.append(Link(f"/dashboard/{district_id}{page[0]}?{query}{page[1]}", api))
    return links


def alerts_panel(store: ProjectionStore, scope: Scope) -> AlertList:
    """The district's school-level alerts at the page's position, windows ending at the
    view's `to` date (else the latest request's), as the page's key may see them."""
    rules = scope.profile.alerts
    at = scope.filters.date_to
    body, _ = alert_list(store, scope.filters, scope.head_hash, rules, at, school_alerts)
    return protect(body, scope.role, scope.profile.suppression_threshold)
