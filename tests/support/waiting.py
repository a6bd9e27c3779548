"""Waiting for asynchronous state in tests: a bound on patience, never an assertion about speed."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(condition: Callable[[], Any], what: str = "condition", timeout: float = 60.0,
             interval: float = 0.1) -> Any:
    """Poll `condition` until truthy (controllers and processes are asynchronous); fails, never times."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(interval)
