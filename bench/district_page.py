"""The district page at a real district's size: server time, browser load, and each metric.

A district is recorded through the emitters' write path by `tutorledger demo` (a Clayton
County year by default: 52,149 students, 68 schools, 180 days), `tutorledger serve` projects
it (embedded, chdb), and then, signed in with a dashboard key as a program lead would be:

- the district page over HTTP (server time to the last byte, and the HTML's size);
- the same page in headless Chromium (navigation timing: first byte, DOM ready, load), when
  Debian's chromium, chromedriver and selenium are present (else one line says so);
- every metric over the whole range, over HTTP, with the same key.

Whatever page the code serves is what is timed. Prints a table; writes JSON.

    python -m tutorledger.bench.district_page --students 52149 --schools 68 --days 180
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tutorledger.bench.metrics_latency import HTTP_METRICS, percentile, serve, serve_env
from tutorledger.infra.keys import key_digest

DISTRICT = "bench-page"
DASHBOARD_KEY = "bench-page-dashboard-key-0000"
# The server as deployed: answers at a position kept (the page's second view on)
KEEP = {"TUTORLEDGER_ANSWER_CACHE_ROWS": "200000"}
ADMIN_KEY = "bench-page-admin-key-000000000"
CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"
CLAYTON = {"students": 52_149, "schools": 68, "days": 180}
# `tutorledger bench --size …`: the district the suite's stage loads (small stays quick for CI).
SUITE_SIZES = {
    "small": {"students": 300, "schools": 4, "days": 10},
    "medium": {"students": 5_000, "schools": 20, "days": 60},
    "large": CLAYTON,
}
CATCH_UP_SECONDS = 3 * 3600


@dataclass(frozen=True)
class PageSpec:
    students: int
    schools: int
    days: int
    page_repeats: int = 5
    metric_repeats: int = 10
    browser_repeats: int = 3


def load_demo(workdir: Path, env: dict[str, str], spec: PageSpec) -> float:
    """`tutorledger demo` into the bench's ledger; returns the seconds it took."""
    cmd = [sys.executable, "-c", "from tutorledger.api.cli.main import main; main()", "demo"]
    sizes = ["--students", str(spec.students), "--schools", str(spec.schools)]
    started = time.perf_counter()
    subprocess.run(
        [*cmd, *sizes, "--days", str(spec.days), "--district", DISTRICT],
        cwd=workdir, env=env, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def caught_up(client: httpx.Client) -> int:
    """Wait until the embedded projector holds the whole ledger; returns the head position."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while time.monotonic() < deadline:
        # Positions are shown with a key only (docs/security.md): the admin key's.
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        checks = client.get("/readyz", headers=auth).json()["checks"]
        head = checks["event_store"].get("head_position")
        if head and checks.get("projection_lag") == 0:
            return int(head)
        time.sleep(2)
    raise RuntimeError("the projections did not catch up with the ledger")


def samples_ms(work: Callable[[], Any], repeats: int) -> dict[str, float]:
    """p50/p95 (nearest rank) of `repeats` timed calls after one warm-up call."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(percentile(times, 50), 1), "p95_ms": round(percentile(times, 95), 1)}


def sign_in(client: httpx.Client) -> None:
    """The dashboard's own form post (same-origin), leaving the session cookie on `client`."""
    target = f"/dashboard/{DISTRICT}"
    response = client.post(
        "/signin", data={"key": DASHBOARD_KEY, "next": target},
        headers={"Origin": str(client.base_url).rstrip("/")},
    )  # fmt: skip
    if response.status_code != 303:
        raise RuntimeError(f"dashboard sign-in answered {response.status_code}")


def page_server(client: httpx.Client, repeats: int) -> dict[str, Any]:
    """The district page over HTTP: time to the last byte, and the HTML's size."""
    path = f"/dashboard/{DISTRICT}"
    first = client.get(path)
    first.raise_for_status()
    timing = samples_ms(lambda: client.get(path).raise_for_status(), repeats)
    return {**timing, "html_kib": round(len(first.content) / 1024, 1)}


def metrics(base: str, repeats: int) -> dict[str, dict[str, float]]:
    """Every metric over the whole range, with the dashboard key (figures as the page gets)."""
    auth = {"Authorization": f"Bearer {DASHBOARD_KEY}"}
    params = {"district_id": DISTRICT}
    out = {}
    with httpx.Client(base_url=base, headers=auth, timeout=600) as client:
        for name in HTTP_METRICS:
            out[name] = samples_ms(partial(_ok, client, f"/v1/metrics/{name}", params), repeats)
    return out


def _ok(client: httpx.Client, path: str, params: dict[str, str]) -> None:
    client.get(path, params=params).raise_for_status()


def browser_missing() -> str | None:
    """Why the browser part cannot run here, or None."""
    for tool in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install 'tutorledger[test]')"
    return None


_NAVIGATION_JS = """
const n = performance.getEntriesByType('navigation')[0];
return n && n.loadEventEnd > 0
  ? [n.responseStart, n.domContentLoadedEventEnd, n.loadEventEnd, n.transferSize] : null;
"""


def page_in_browser(base: str, repeats: int) -> dict[str, Any]:
    """The page in headless Chromium: navigation timing of `repeats` loads after a warm-up."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='tl-bench-chromium-')}")
    driver = webdriver.Chrome(service=Service(shutil.which(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(600)
        driver.get(f"{base}/")
        driver.find_element(By.ID, "key").send_keys(DASHBOARD_KEY)
        driver.find_element(By.CSS_SELECTOR, "form.signin-form button").click()
        rows: list[list[float]] = []
        for _ in range(repeats + 1):
            driver.get(f"{base}/dashboard/{DISTRICT}")
            found = _wait(lambda: driver.execute_script(_NAVIGATION_JS))
            rows.append([float(v) for v in found])
    finally:
        driver.quit()
    rows = rows[1:]  # the first load warms the server's and the browser's caches
    names = ("first_byte_ms", "dom_ready_ms", "load_ms")
    out: dict[str, Any] = {
        name: round(percentile([r[i] for r in rows], 50), 1) for i, name in enumerate(names)
    }
    out["load_p95_ms"] = round(percentile([r[2] for r in rows], 95), 1)
    out["repeats"] = repeats
    return out


def _wait(check: Callable[[], Any], timeout: float = 600.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError("the page did not finish loading")


def run(spec: PageSpec, browser: bool = True) -> dict[str, Any]:
    """Record the district, serve it, time the page (server and browser) and each metric."""
    with tempfile.TemporaryDirectory(prefix="tl-page-") as tmp:
        workdir = Path(tmp)
        url = f"chdb://{workdir}/chdb?database=bench_page"
        loaded = load_demo(workdir, serve_env(workdir, url, embedded=True), spec)
        keys = [
            {"key_sha256": key_digest(DASHBOARD_KEY), "role": "dashboard", "districts": [DISTRICT]},
            {"key_sha256": key_digest(ADMIN_KEY), "role": "admin", "districts": ["*"]},
        ]
        with served(workdir, url, keys, {}) as base:  # serve_env keeps no answers
            with httpx.Client(base_url=base, timeout=600) as client:
                started = time.perf_counter()
                head = caught_up(client)
                projected = time.perf_counter() - started
                sign_in(client)
                computed = page_server(client, spec.page_repeats)
            whole_range = metrics(base, spec.metric_repeats)
        with served(workdir, url, keys, KEEP) as base:
            with httpx.Client(base_url=base, timeout=600) as client:
                caught_up(client)
                sign_in(client)
                repeated = page_server(client, spec.page_repeats)
            missing = browser_missing() if browser else "not asked for"
            in_browser = None if missing else page_in_browser(base, spec.browser_repeats)
        report = {
            "backend": "chdb (embedded)",
            "district": {"students": spec.students, "schools": spec.schools, "days": spec.days},
            "events": head,
            "demo_seconds": round(loaded, 1),
            "projection_catch_up_seconds": round(projected, 1),
            "page_server": computed,
            "page_server_repeat_view": repeated,
            "page_browser": in_browser,
            "browser_skipped": missing,
            "metrics_whole_range": whole_range,
        }
    return report


@contextmanager
def served(
    workdir: Path, url: str, keys: list[dict[str, Any]], settings: dict[str, str]
) -> Iterator[str]:
    """The embedded server on the loaded district (its base URL), stopped afterwards."""
    proc, base = serve(workdir, url, embedded=True, keys=keys, settings=settings)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (what the benchmark docs quote)."""
    d = report["district"]
    lines = [
        f"district page: {d['students']:,} students, {d['schools']} schools, {d['days']} days, "
        f"{report['events']:,} events ({report['backend']})",
        f"{'what':34s} {'p50 ms':>9s} {'p95 ms':>9s}",
    ]
    page = report["page_server"]
    lines.append(
        f"{'page, server (HTTP, last byte)':34s} {page['p50_ms']:9.1f} {page['p95_ms']:9.1f}"
    )
    again = report.get("page_server_repeat_view")
    if again:
        label = "page, server, answers kept"
        lines.append(f"{label:34s} {again['p50_ms']:9.1f} {again['p95_ms']:9.1f}")
    lines.append(f"{'page HTML':34s} {page['html_kib']:>9.1f} KiB")
    shown = report["page_browser"]
    if shown:
        lines.append(f"{'Chromium (kept): first byte':34s} {shown['first_byte_ms']:9.1f}")
        lines.append(f"{'Chromium (kept): DOM ready':34s} {shown['dom_ready_ms']:9.1f}")
        lines.append(
            f"{'Chromium (kept): load':34s} {shown['load_ms']:9.1f} {shown['load_p95_ms']:9.1f}"
        )
    else:
        lines.append(f"page in Chromium: skipped ({report['browser_skipped']})")
    for name, timing in report["metrics_whole_range"].items():
        label = f"/v1/metrics/{name}"
        lines.append(f"{label:34s} {timing['p50_ms']:9.1f} {timing['p95_ms']:9.1f}")
    return "\n".join(lines)


def suite_stages(size: str) -> list[dict[str, Any]]:
    """The suite's stage (`tutorledger bench --size …`): one entry per timed figure, as
    keyword arguments of bench.suite.Stage (seconds = the p50)."""
    spec = PageSpec(**SUITE_SIZES[size], page_repeats=3, metric_repeats=5, browser_repeats=2)
    report = run(spec)
    events = report["events"]
    stages = [{"name": "district page (server, HTTP)", "events": events,
               "seconds": report["page_server"]["p50_ms"] / 1000,
               "extra": report["page_server"]}]  # fmt: skip
    if report["page_browser"]:
        shown = report["page_browser"]
        stages.append({"name": "district page (Chromium load)", "events": events,
                       "seconds": shown["load_ms"] / 1000, "extra": shown})  # fmt: skip
    for name, timing in report["metrics_whole_range"].items():
        stages.append({"name": f"district page size: {name} (HTTP)", "events": events,
                       "seconds": timing["p50_ms"] / 1000, "extra": timing})  # fmt: skip
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--students", type=int, default=CLAYTON["students"])
    parser.add_argument("--schools", type=int, default=CLAYTON["schools"])
    parser.add_argument("--days", type=int, default=CLAYTON["days"])
    parser.add_argument("--page-repeats", type=int, default=5)
    parser.add_argument("--metric-repeats", type=int, default=10)
    parser.add_argument("--browser-repeats", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium part")
    parser.add_argument("--report", type=Path, default=Path("build/bench-district-page.json"))
    args = parser.parse_args()
    spec = PageSpec(
        args.students, args.schools, args.days,
        args.page_repeats, args.metric_repeats, args.browser_repeats,
    )  # fmt: skip
    report = run(spec, browser=not args.no_browser)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(table(report) + f"\n(JSON: {args.report})\n")


if __name__ == "__main__":
    main()
