"""Load on a live `tutorledger serve`: emitters posting batches while dashboards read figures.

Run by tests/integration/test_load.py as `locust --headless` against a loopback address
(never imported by pytest itself: locust patches the standard library with gevent).
Each emitter posts its own synthetic district's sessions in order, 20 events a request;
an answer with any `rejected` result counts as a failure. Like the clients docs/operations.md
describes, an emitter sends the same batch again after a 503 or a dropped connection;
each such resend is counted under RESENT, never as a failure (the test then checks that
every event was stored once). Readers ask for the figures the
dashboard shows. The key comes from TUTORLEDGER_LOAD_KEY, the district from
TUTORLEDGER_LOAD_DISTRICT.
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

from locust import HttpUser, between, task

from tutorledger.bench.district import DistrictSpec, generate

BATCH = 20
RESENT = "POST /v1/events again after 503 or a dropped connection"
DISTRICT = os.environ.get("TUTORLEDGER_LOAD_DISTRICT", "load")
HEADERS = {"Authorization": f"Bearer {os.environ.get('TUTORLEDGER_LOAD_KEY', '')}"}


def own_events() -> list[dict[str, Any]]:
    """A fresh district's events, sessions renamed so no two emitters share one."""
    tag = uuid.uuid4().hex[:8]
    spec = DistrictSpec(district_id=DISTRICT, students=400, schools=4, days=10,
                        seed=random.randrange(2**31))  # fmt: skip
    events = []
    for event in generate(spec).events:
        events.append({**event, "session_id": f"u{tag}-{event['session_id']}"})
    return events


class Emitter(HttpUser):
    weight = 3
    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.events = own_events()
        self.next = 0

    @task
    def post_events(self) -> None:
        if self.next >= len(self.events):
            self.events, self.next = own_events(), 0
        batch = self.events[self.next : self.next + BATCH]
        with self.client.post("/v1/events", json={"events": batch}, headers=HEADERS,
                              name="POST /v1/events", catch_response=True) as answer:  # fmt: skip
            if answer.status_code in (0, 503):  # 0: no answer at all; resend next time
                answer.success()
                self.environment.events.request.fire(
                    request_type="POST", name=RESENT, response_time=0, response_length=0,
                    exception=None, context={},
                )  # fmt: skip
                return
            self.next += BATCH
            if answer.status_code != 200:
                answer.failure(f"HTTP {answer.status_code}: {answer.text[:300]}")
                return
            rejected = [r for r in answer.json()["results"] if r["status"] == "rejected"]
            if rejected:
                answer.failure(f"rejected: {rejected[0]}")


class Reader(HttpUser):
    weight = 1
    wait_time = between(0.0, 0.2)

    def read(self, metric: str) -> None:
        self.client.get(f"/v1/metrics/{metric}", params={"district_id": DISTRICT},
                        headers=HEADERS, name=f"GET /v1/metrics/{metric}")  # fmt: skip

    @task(3)
    def participation(self) -> None:
        self.read("participation")

    @task(2)
    def demand(self) -> None:
        self.read("demand")

    @task(1)
    def wait_times(self) -> None:
        self.read("wait-times")
