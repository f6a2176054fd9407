"""Waiting on conditions, not on deadlines: a loaded 2-core machine is slow, not broken.

Every wait names what it waits for and has a generous bound, only so that a real hang ends
with a message instead of hanging CI.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
GENEROUS = 300.0


def wait_until(
    probe: Callable[[], T], what: str, timeout: float = GENEROUS, interval: float = 0.3
) -> T:
    """Call `probe` until it returns something truthy; return that. Fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
