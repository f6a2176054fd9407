"""The fault harness's emitters: post a district at a steady rate, resend until answered.

Each emitter sends its queue in order, BATCH events at a time, and resends the same batch
(same event ids) on a timeout, a refused connection or a 5xx, as docs/operations.md tells clients
to. A share of answered batches is sent once more as if the answer had been lost: those
must all come back `duplicate`. The Book keeps what each event id was told, and when.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

RATE = 25.0  # events per second, all emitters together
EMITTERS, BATCH = 3, 5
LOST_ANSWERS = 0.05  # share of answered batches sent again as if the answer had been lost
KEY = "faults-admin-key-000000000"


@dataclass
class Book:
    """What the emitters were told, per event id."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    status: dict[str, str] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    sends: Counter[str] = field(default_factory=Counter)
    retried: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    resent_statuses: Counter[str] = field(default_factory=Counter)
    answered_at: dict[int, float] = field(default_factory=dict)  # position -> monotonic time
    started: float = field(default_factory=time.monotonic)

    def record(self, batch: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
        with self.lock:
            for event, result in zip(batch, results, strict=True):
                eid = event["event_id"]
                if result["status"] == "rejected":
                    raise AssertionError(f"rejected: {result}")
                self.status.setdefault(eid, result["status"])  # a later resend: duplicate
                self.events.setdefault(eid, event)
                if result.get("position") is not None:
                    self.answered_at.setdefault(int(result["position"]), time.monotonic())


def emit(base_url: str, queue: list[dict[str, Any]], book: Book, stop: threading.Event) -> None:
    try:
        send_all(base_url, queue, book, stop)
    except BaseException as exc:  # a thread's failure must fail the test
        book.failures.append(repr(exc))


def send_all(base_url: str, queue: list[dict[str, Any]], book: Book, stop: threading.Event) -> None:
    """Send `queue` in order, BATCH at a time at RATE/EMITTERS; resend a batch until answered."""
    interval = BATCH / (RATE / EMITTERS)
    with httpx.Client(base_url=base_url, timeout=15,
                      headers={"Authorization": f"Bearer {KEY}"}) as client:  # fmt: skip
        for start in range(0, len(queue), BATCH):
            if stop.is_set():
                return
            began = time.monotonic()
            batch = queue[start : start + BATCH]
            attempt = 0
            while True:
                with book.lock:
                    for e in batch:
                        book.sends[e["event_id"]] += 1
                        if attempt:
                            book.retried.add(e["event_id"])
                attempt += 1
                try:
                    response = client.post("/v1/events", json={"events": batch})
                except httpx.TransportError as exc:
                    book.errors[type(exc).__name__] += 1
                    time.sleep(0.5)
                    continue
                if response.status_code == 200:
                    book.record(batch, response.json()["results"])
                    if random.random() < LOST_ANSWERS:
                        resend_as_if_lost(client, batch, book)
                    break
                book.errors[f"http_{response.status_code}"] += 1
                assert response.status_code >= 500, response.text
                time.sleep(0.5)
            time.sleep(max(0.0, interval - (time.monotonic() - began)))


def resend_as_if_lost(client: httpx.Client, batch: list[dict[str, Any]], book: Book) -> None:
    """What a client does when an answer never came: send the same batch again."""
    while True:
        try:
            response = client.post("/v1/events", json={"events": batch})
        except httpx.TransportError:
            time.sleep(0.5)
            continue
        if response.status_code == 200:
            break
        time.sleep(0.5)
    with book.lock:
        for result in response.json()["results"]:
            book.resent_statuses[result["status"]] += 1
