"""Roster groups over the read models give identical figures on ClickHouse 18.16 and chdb 26,
equal to an independent fold: the `group` filter, the group's reach denominator and the
equity gaps (group against the rest of the rostered district), at two import positions."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import reference_metrics as ref
import reference_standard as std
from metric_events import TZ, district

from tutorledger.bench.metrics_latency import published
from tutorledger.domain.cohort import cohort_envelope
from tutorledger.domain.district import SchoolHours
from tutorledger.domain.dosage_standard import DosageStandard
from tutorledger.domain.envelope import parse_envelope
from tutorledger.domain.published import parse_published
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.dosage_standard import met_students_sql
from tutorledger.projections.engagement import engagement
from tutorledger.projections.filters import Filters
from tutorledger.projections.participation import participation
from tutorledger.projections.rows import event_row
from tutorledger.projections.satisfaction import satisfaction
from tutorledger.projections.schema import migrate
from tutorledger.projections.student_groups import equity_gaps
from tutorledger.projections.wait_times import wait_times
from tutorledger.projections.writer import ReadModelWriter

D = "cg-gen"
AT = datetime(2026, 12, 1, tzinfo=UTC)
UNSERVED = [f"unserved-{i:03d}" for i in range(50)]


def fold(events: list[dict[str, Any]], members: set[str], **f: Any) -> tuple[int, int, int]:
    """(members, reached, regular: requests in ≥ 3 ISO weeks) over requests in the range."""
    weeks: dict[str, set[tuple[int, int]]] = {}
    for e in events:
        if e["type"] != "session.requested" or e["payload"]["student_id"] not in members:
            continue
        local = datetime.fromisoformat(e["occurred_at"]).astimezone(ZoneInfo(TZ))
        if f.get("date_from") and local.date() < f["date_from"]:
            continue
        weeks.setdefault(e["payload"]["student_id"], set()).add(local.isocalendar()[:2])
    return len(members), len(weeks), sum(len(w) >= 3 for w in weeks.values())


def _rows(gen: list[dict[str, Any]]) -> tuple[list[Any], dict[str, Any]]:
    tokens: dict[str, str] = {}
    rows: list[Any] = []

    def add(event: dict[str, Any]) -> int:
        rows.append(event_row(len(rows) + 1, parse_published(event)))
        return len(rows)

    for raw in gen:
        add(published(parse_envelope(raw).canonical(), tokens))
    served = sorted({e["payload"]["student_id"] for e in gen if e["type"] == "session.requested"})
    for s in UNSERVED:
        tokens.setdefault(s, f"tok-{s}-0000000000")
    imports = []
    for ell in (set(served[::4]) | set(UNSERVED[:30]), set(served[1::3])):
        everyone = set(served) | set(UNSERVED)
        groups = {"all": everyone, "ell": ell, "econ_disadv": set(sorted(everyone)[::2])}
        for code, members in groups.items():
            envelope = cohort_envelope(D, f"roster.{code}", code, [tokens[s] for s in members], AT)
            position = add(envelope)
        imports.append((groups, position))
    return rows, {"imports": imports}


# One session of 20 minutes or more in a counted week: some students meet it, some do not.
STANDARD = DosageStandard(sessions_per_week=1, session_minutes=20, weeks=1)
RULE = std.Rule(per_week=1, minutes=20, weeks=1)


def met_fold(events: list[dict[str, Any]], members: set[str], **f: Any) -> int:
    """Independent fold (tests/reference_standard.py): the members who met RULE."""
    done = [s for s in ref.select(events, D, TZ, **f) if std.length_us(s) is not None]
    counted = [w for w in std.judged(done, TZ, **f) if std.school_days(w, RULE)]
    plain = std.students(done, TZ, RULE, lambda s: [()]).get((), {})
    return sum(
        sid in members and std.status(st, counted, RULE) == "met" for sid, st in plain.items()
    )


def _figures(store: ProjectionStore, meaning: dict[str, Any], gen: list[Any]) -> list[Any]:
    out: list[tuple[str, Any, Any]] = []
    for i, (groups, position) in enumerate(meaning["imports"]):
        for f in ({}, {"date_from": date(2026, 10, 20)}):
            whole = Filters(D, position, TZ, generation=1, **f)
            met = met_students_sql(store, whole, STANDARD, SchoolHours())
            body = equity_gaps(store, whole, met)
            everyone = groups["all"]
            expected = []
            for code in ("econ_disadv", "ell"):
                n, reached, regular = fold(gen, groups[code], **f)
                rn, rreached, rregular = fold(gen, everyone - groups[code], **f)
                standard = met_fold(gen, groups[code], **f)
                rstandard = met_fold(gen, everyone - groups[code], **f)
                for measure, x, rx in (("reach", reached, rreached),
                                       ("regular_use", regular, rregular),
                                       ("dosage_standard", standard, rstandard)):  # fmt: skip
                    expected.append((code, measure, n, x, rn, rx, x / n - rx / rn))
            got = [(r["group"], r["measure"], r["students"], r["count"], r["rest_students"],
                    r["rest_count"], r["difference"]) for r in body["rows"]]  # fmt: skip
            out.append((f"equity {i} {f}", got, expected))
            out.append((f"students {i}", body["students"], len(everyone)))
            ell = Filters(D, position, TZ, generation=1, group="ell", **f)
            mine = ref.in_cohort(gen, groups["ell"])
            shown = engagement(store, ell)
            reference = ref.engagement(mine, D, TZ, **f)
            out.append((f"engagement {i} {f}", {k: shown[k] for k in reference}, reference))
            by_group = Filters(D, position, TZ, generation=1, **f)
            for metric, reference, keys, names in (
                (wait_times, ref.wait_times, ("student_group",), ()),
                (satisfaction, ref.satisfaction, ("school_id", "student_group"), ("school",)),
            ):
                rows = metric(store, by_group, keys)
                for code in ("econ_disadv", "ell"):
                    expected = [{**r, "student_group": code} for r in reference(
                        ref.in_cohort(gen, groups[code]), D, TZ, names, **f)]  # fmt: skip
                    got = [r for r in rows if r["student_group"] == code]
                    out.append((f"{metric.__name__} by group {code} {i} {f}", got, expected))
            served = participation(store, ell)
            out.append((f"reach {i} {f}", (served["cohort_size"], served["students_served"]),
                        (len(groups["ell"]), fold(gen, groups["ell"], **f)[1])))  # fmt: skip
    return out


def test_groups_identical_on_clickhouse_18_and_chdb(chdb_url: str, clickhouse_url: str) -> None:
    seen: set[str] = set()
    gen = [
        e
        for e in district(D, students=200).events
        if not (e["event_id"] in seen or seen.add(e["event_id"]))
    ]
    rows, meaning = _rows(gen)
    results = {}
    for url in (chdb_url, clickhouse_url):
        store = open_projection_store(Settings(clickhouse=url))
        try:
            migrate(store)
            ReadModelWriter(store).write(rows)
            results[store.kind] = _figures(store, meaning, gen)
        finally:
            store.close()
    for (label, a, expected), (_, b, _) in zip(results["chdb"], results["clickhouse"], strict=True):
        plain = json.loads(json.dumps(a, default=str))
        assert plain == json.loads(json.dumps(b, default=str)), label
        assert plain == json.loads(json.dumps(expected, default=str)), label
