"""Waiting for asynchronous state in tests and benches: a bound on patience, never an assertion about speed.

The one waiting helper: folders that want other defaults bind them with functools.partial
(tests/reconciler/conftest.py, tests/e2e/harness.py, tests/chart/install.py).
"""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(condition: Callable[[], Any], what: str = "condition", timeout: float = 60.0,
             interval: float = 0.1, ignoring: tuple[type[BaseException], ...] = ()) -> Any:
    """Poll `condition` until truthy (controllers and processes are asynchronous); fails, never times.

    Returns the truthy value. An exception of a type in `ignoring` counts as "not yet" (a server still
    starting); the last one is named if patience runs out. Any other exception ends the wait at once,
    so a condition can give up early (a process that exited) by raising.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except ignoring as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s"
                                 + (f" (last: {last!r})" if last is not None else ""))
        time.sleep(interval)
